/* avx512 kernels: being written (the table keeps the scalar reference until then). */
#include "kernels.h"

void cs_kernels_avx512(cs_kernels *k) { (void)k; }
