/* Run-time choice of the kernel level: start from the scalar reference and
 * upgrade level by level to the best the CPU and OS support (x86: CPUID +
 * XGETBV, so AVX/AVX-512 state must be saved by the OS; aarch64: NEON is
 * baseline). CASCADE_SIMD=scalar|avx2|avx512|neon forces a level.
 *
 * The bf16 products have a sub-choice at the avx512 level: AMX tiles where
 * the CPU has AMX-BF16 and Linux grants this process the tile state (asked
 * once, on first use: arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)), else
 * AVX512-BF16. CASCADE_AMX=0 keeps AMX off (to compare, or where the larger
 * signal frames of tile state are unwelcome). AVX512-BF16 has two kernels
 * with the same bits: VDPBF16PS itself, and each pair as two fp32 FMAs,
 * twice as fast where the instruction issues at half the FMA rate (Intel's
 * Sapphire/Emerald Rapids; on Zen 4 it runs at the FMA rate, twice fp32).
 * The FMA form is taken on Intel CPUs; CASCADE_BF16_FMA=0|1 forces a choice. */
#include "kernels.h"
#include "gemm_bf16.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__) && (defined(__x86_64__) || defined(__i386__))
#include <sys/syscall.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CS_X86 1
#endif

static cs_simd_level current = CS_SIMD_SCALAR;
static int installed;   /* a cs_simd_use succeeded: cs_simd_ensure keeps its choice */
static int refused;     /* the last cs_simd_pick failed: the scalar reference by default */
static pthread_once_t detect_flag = PTHREAD_ONCE_INIT, ensure_flag = PTHREAD_ONCE_INIT;
static int cpu_has[CS_SIMD_LEVELS];
static int cpu_bf16;   /* AVX512-BF16 (with the avx512 level's requirements) */
static int cpu_amx;    /* AMX-TILE + AMX-BF16, tile state enabled in XCR0 (with cpu_bf16) */
static int amx_off;    /* CASCADE_AMX=0 */
static int amx_apack;  /* CASCADE_AMX_APACK=1: the AMX kernel's pre-packed A in use */
static int cpu_intel;  /* GenuineIntel: VDPBF16PS zmm at half the FMA rate */
static int bf16_fma;   /* CASCADE_BF16_FMA: -1 by vendor, 0 the instruction, 1 two FMAs */
static char model[64] = "unknown";
static char features[256];

static const char *const names[CS_SIMD_LEVELS] = {"scalar", "avx2", "avx512", "neon"};

const char *cs_simd_name(cs_simd_level l) { return (unsigned)l < CS_SIMD_LEVELS ? names[l] : "?"; }

static void add_feature(const char *f)
{
    size_t o = strlen(features);
    snprintf(features + o, sizeof features - o, "%s%s", o ? " " : "", f);
}

#ifdef CS_X86
static unsigned long long xgetbv0(void)
{
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static void detect(void)
{
    unsigned a, b, c, d, max = __get_cpuid_max(0, NULL);
    if (__get_cpuid_max(0x80000000, NULL) >= 0x80000004) {
        unsigned *m = (unsigned *)model;
        for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002 + i, &m[4 * i], &m[4 * i + 1], &m[4 * i + 2], &m[4 * i + 3]);
        model[48] = 0;
        char *s = model;
        while (*s == ' ') s++;
        memmove(model, s, strlen(s) + 1);
    }
    __cpuid(0, a, b, c, d);
    cpu_intel = b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e;   /* "Genu" "ineI" "ntel" */
    if (max < 7) return;
    __cpuid(1, a, b, c, d);
    int osxsave = c >> 27 & 1, avx = c >> 28 & 1, fma = c >> 12 & 1, f16c = c >> 29 & 1;
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    int ymm_ok = (xcr0 & 6) == 6, zmm_ok = (xcr0 & 0xe6) == 0xe6;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = b >> 5 & 1, f = b >> 16 & 1, dq = b >> 17 & 1, bw = b >> 30 & 1, vl = b >> 31 & 1;
    __cpuid_count(7, 1, a, b, c, d);
    int bf16 = a >> 5 & 1;
    __cpuid_count(7, 0, a, b, c, d);
    int amx_bf16 = d >> 22 & 1, amx_tile = d >> 24 & 1, tile_ok = (xcr0 >> 17 & 3) == 3;
    if (avx) add_feature("avx");
    if (avx2) add_feature("avx2");
    if (fma) add_feature("fma");
    if (f16c) add_feature("f16c");
    if (f) add_feature("avx512f");
    if (bw) add_feature("avx512bw");
    if (dq) add_feature("avx512dq");
    if (vl) add_feature("avx512vl");
    if (bf16) add_feature("avx512bf16");
    if (amx_tile) add_feature("amx-tile");
    if (amx_bf16) add_feature("amx-bf16");
    if (amx_tile && !tile_ok) add_feature("(os: no tile state)");
    if (!ymm_ok) add_feature("(os: no ymm state)");
    else if (!zmm_ok) add_feature("(os: no zmm state)");
    cpu_has[CS_SIMD_AVX2] = ymm_ok && avx && avx2 && fma && f16c;
    cpu_has[CS_SIMD_AVX512] = cpu_has[CS_SIMD_AVX2] && zmm_ok && f && bw && dq && vl;
    cpu_bf16 = cpu_has[CS_SIMD_AVX512] && bf16;
    cpu_amx = cpu_bf16 && amx_tile && amx_bf16 && tile_ok;
}
#elif defined(__aarch64__)
#include <sys/auxv.h>
static void detect(void)
{
    snprintf(model, sizeof model, "aarch64");
    add_feature("neon");
    unsigned long hw = getauxval(AT_HWCAP);
    if (hw & (1ul << 9)) add_feature("fphp");   /* HWCAP_FPHP: half-precision arithmetic */
    cpu_has[CS_SIMD_NEON] = 1;
}
#else
static void detect(void) {}
#endif

static int built(cs_simd_level l)
{
    switch (l) {
    case CS_SIMD_SCALAR: return 1;
#ifdef CS_HAVE_AVX2
    case CS_SIMD_AVX2: return 1;
#endif
#ifdef CS_HAVE_AVX512
    case CS_SIMD_AVX512: return 1;
#endif
#ifdef CS_HAVE_NEON
    case CS_SIMD_NEON: return 1;
#endif
    default: return 0;
    }
}

static void detect_all(void)
{
    cpu_has[CS_SIMD_SCALAR] = 1;
    detect();
}

static void detect_once(void) { pthread_once(&detect_flag, detect_all); }

/* why the last cs_simd_pick / cs_simd_use of this thread failed */
static _Thread_local char why[160];
const char *cs_simd_why(void) { return why; }

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return code;
}

int cs_simd_supported(cs_simd_level l)
{
    detect_once();
    return (unsigned)l < CS_SIMD_LEVELS && built(l) && cpu_has[l];
}

int cs_simd_use(cs_simd_level l)
{
    if ((unsigned)l >= CS_SIMD_LEVELS) return fail(CS_SIMD_EBAD, "unknown SIMD level %d", (int)l);
    if (!cs_simd_supported(l))
        return fail(CS_SIMD_EUNAVAIL, "SIMD level '%s' is not available: %s", names[l],
                    built(l) ? "this CPU (or OS) does not support it" : "not compiled into this build");
    cs_kernels k;
    cs_kernels_ref(&k);
#ifdef CS_HAVE_AVX2
    if (l >= CS_SIMD_AVX2 && l <= CS_SIMD_AVX512) cs_kernels_avx2(&k);
#endif
#ifdef CS_HAVE_AVX512
    if (l == CS_SIMD_AVX512) cs_kernels_avx512(&k);
#endif
#ifdef CS_HAVE_NEON
    if (l == CS_SIMD_NEON) cs_kernels_neon(&k);
#endif
    cs_k = k;
    current = l;
    installed = 1;
    refused = 0;
    return 0;
}

static int pick(void)
{
    detect_once();
    const char *amx = getenv("CASCADE_AMX");
    amx_off = 0;
    if (amx && *amx) {
        if (!strcmp(amx, "0")) amx_off = 1;
        else if (strcmp(amx, "1")) {
            cs_simd_use(CS_SIMD_SCALAR);
            return fail(CS_SIMD_EBAD, "CASCADE_AMX=%s: use 0 (AMX off) or 1 (AMX where the CPU has it)", amx);
        }
    }
    const char *apack = getenv("CASCADE_AMX_APACK");
    amx_apack = 0;
    if (apack && *apack) {
        if (!strcmp(apack, "0") || !strcmp(apack, "1")) amx_apack = apack[0] - '0';
        else {
            cs_simd_use(CS_SIMD_SCALAR);
            return fail(CS_SIMD_EBAD, "CASCADE_AMX_APACK=%s: use 0 (A packed per call) or 1 (A packed once per product)",
                        apack);
        }
    }
    const char *fma = getenv("CASCADE_BF16_FMA");
    bf16_fma = -1;
    if (fma && *fma) {
        if (!strcmp(fma, "0") || !strcmp(fma, "1")) bf16_fma = fma[0] - '0';
        else {
            cs_simd_use(CS_SIMD_SCALAR);
            return fail(CS_SIMD_EBAD, "CASCADE_BF16_FMA=%s: use 0 (VDPBF16PS) or 1 (two fp32 FMAs a pair)", fma);
        }
    }
    const char *env = getenv("CASCADE_SIMD");
    if (env && *env) {
        for (int l = 0; l < CS_SIMD_LEVELS; l++)
            if (!strcmp(env, names[l])) return cs_simd_use((cs_simd_level)l);
        cs_simd_use(CS_SIMD_SCALAR);
        return fail(CS_SIMD_EBAD, "CASCADE_SIMD=%s: unknown level (use scalar, avx2, avx512 or neon)", env);
    }
    for (int l = CS_SIMD_LEVELS - 1; l >= 0; l--)
        if (cs_simd_supported((cs_simd_level)l)) return cs_simd_use((cs_simd_level)l);
    return cs_simd_use(CS_SIMD_SCALAR);
}

int cs_simd_pick(void)
{
    int rc = pick();
    refused = rc != 0;
    return rc;
}

static void ensure_pick(void)
{
    if (!installed && cs_simd_pick()) cs_simd_use(CS_SIMD_SCALAR);
}

void cs_simd_ensure(void) { pthread_once(&ensure_flag, ensure_pick); }

cs_simd_level cs_simd_current(void)
{
    cs_simd_ensure();
    return current;
}

const char *cs_cpu_model(void)
{
    detect_once();
    return model;
}

const char *cs_cpu_features(void)
{
    detect_once();
    return features;
}

/* Linux hands out AMX tile state only on request (the signal frame grows
 * by 8 KB); elsewhere, or when refused, AMX stays unused. */
static int amx_granted;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_request(void)
{
#if defined(__linux__) && defined(__x86_64__) && defined(SYS_arch_prctl)
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    amx_granted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#endif
}

int cs_amx_usable(void)
{
    detect_once();
    if (!cpu_amx) return 0;
    pthread_once(&amx_once, amx_request);
    return amx_granted;
}

cs_gemm_bf16_fn cs_gemm_bf16_native(void)
{
    if (cs_simd_current() != CS_SIMD_AVX512 || !cpu_bf16) return NULL;
#ifdef CS_HAVE_AMX
    if (!amx_off && cs_amx_usable()) return cs_gemm_bf16_amx;
#endif
#ifdef CS_HAVE_AVX512BF16
    if (bf16_fma == 1 || (bf16_fma < 0 && cpu_intel)) return cs_gemm_bf16_avx512_fma;
    return cs_gemm_bf16_avx512;
#endif
    return NULL;
}

const cs_gemm_bf16_apacked *cs_gemm_bf16_apacked_of(cs_gemm_bf16_fn kern)
{
#ifdef CS_HAVE_AVX512BF16
    if (kern == cs_gemm_bf16_avx512) return &cs_gemm_bf16_avx512_apacked;
    if (kern == cs_gemm_bf16_avx512_fma) return &cs_gemm_bf16_avx512_fma_apacked;
#endif
#ifdef CS_HAVE_AMX
    if (kern == cs_gemm_bf16_amx && amx_apack) return &cs_gemm_bf16_amx_apacked;
#endif
    (void)kern;
    return NULL;
}

cs_gemm_bf16_fn cs_gemm_bf16_native_ref(void)
{
    cs_gemm_bf16_fn k = cs_gemm_bf16_native();
#ifdef CS_HAVE_AMX
    if (k == cs_gemm_bf16_amx) return cs_gemm_bf16_amx_ref;
#endif
    return k ? cs_gemm_bf16_ref : NULL;
}

const char *cs_gemm_bf16_name(void)
{
    cs_gemm_bf16_fn k = cs_gemm_bf16_native();
#ifdef CS_HAVE_AMX
    if (k == cs_gemm_bf16_amx) return "32x32 AMX-BF16 tiles (tdpbf16ps)";
#endif
#ifdef CS_HAVE_AVX512BF16
    if (k == cs_gemm_bf16_avx512_fma) return "12x32 AVX512-BF16, vdpbf16ps as two fp32 FMAs (DAZ/FTZ)";
#endif
    return k ? "12x32 AVX512-BF16 (vdpbf16ps)" : NULL;
}


/* A check for tests/levels.sh: with $CASCADE_SIMD_REPORT naming a file, a
 * process that used the table (or chose a level) appends at exit one line
 * "NAME pid=PID CASCADE_SIMD=WANTED level=IN_USE", so a test run under a
 * forced level can be shown to have computed at it; " refused" ends the line
 * where the last pick failed (a bad $CASCADE_SIMD or $CASCADE_AMX, which the
 * caller reports: the CLI exits 2). One write() in append
 * mode, so processes running side by side do not mix their lines. */
__attribute__((destructor)) static void report_level(void)
{
    const char *path = getenv("CASCADE_SIMD_REPORT");
    if (!path || !*path || cs_kernels_untouched()) return;
    char name[64] = "?";
    FILE *f = fopen("/proc/self/comm", "r");
    if (f) {
        if (fgets(name, sizeof name, f)) name[strcspn(name, "\n")] = 0;
        fclose(f);
    }
    const char *want = getenv("CASCADE_SIMD");
    char line[192];
    int n = snprintf(line, sizeof line, "%s pid=%ld CASCADE_SIMD=%s level=%s%s\n", name, (long)getpid(),
                     want && *want ? want : "-", names[current], refused ? " refused" : "");
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (n > 0 && write(fd, line, (size_t)n) < 0) { /* nothing to do: a test then finds no line */ }
    close(fd);
}
