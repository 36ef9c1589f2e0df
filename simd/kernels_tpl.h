/* The kernel table of one ISA file: included at its end, after it defines
 * CS_KERNELS_FN (the table function's name, kernels.h) and a static
 * function of each entry's name. */
void CS_KERNELS_FN(cs_kernels *k)
{
    k->bf16_to_f32 = bf16_to_f32;
    k->f16_to_f32 = f16_to_f32;
    k->f32_to_bf16 = f32_to_bf16;
    k->f32_to_f16 = f32_to_f16;
    k->layernorm = layernorm;
    k->gelu = gelu;
    k->quick_gelu = quick_gelu;
    k->silu = silu;
    k->sigmoid = sigmoid;
    k->softmax = softmax;
    k->sumsq_cols = sumsq_cols;
    k->grn_apply = grn_apply;
    k->add = add;
    k->mul = mul;
    k->scale = scale;
    k->modulate = modulate;
    k->add_bias = add_bias;
    k->dwconv3x3 = dwconv3x3;
    k->gemm_f32 = gemm_f32;
    k->gemm_f32_bf16w = gemm_f32_bf16w;
}
