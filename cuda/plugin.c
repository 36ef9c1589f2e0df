/* The CUDA backend plugin, libcascade-cuda.so: the entry table of
 * src/backend.h, the device list and the one-line reasons a machine cannot
 * use it. The CUDA runtime is linked statically, so this file needs only the
 * driver (libcuda.so.1, which the runtime dlopens) and cuBLAS at run time;
 * libcascade never links any of it.
 *
 * The op set (src/backend.h's cs_dev_ops) runs on device memory: memory,
 * copies and the weight cache in mem.c, products in gemm.c, attention in
 * attention.cu, the other ops in kernels.cu, the backward ops (training) in
 * grad.cu, the optimizer ops in optim.cu (weight_rw in mem.c). */
#include "core.h"

#include "error.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define VISIBLE __attribute__((visibility("default")))

/* 0 when the runtime sees at least one device; else the reason in err */
static int why_none(char *err, size_t n)
{
    /* ask the loader first: it says why the driver is missing, the runtime
     * only that it is "insufficient" */
    void *drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!drv) {
        const char *e = dlerror();
        snprintf(err, n, "CUDA driver not found (%s)", e ? e : "libcuda.so.1");
        return CS_EUNSUP;
    }
    dlclose(drv);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    (void)cudaGetLastError();
    if (e == cudaSuccess && count > 0) return 0;
    if (e == cudaSuccess || e == cudaErrorNoDevice) {
        snprintf(err, n, "no CUDA device (the driver sees none; CUDA_VISIBLE_DEVICES may hide them)");
    } else if (e == cudaErrorInsufficientDriver) {
        int drv_v = 0;
        cudaDriverGetVersion(&drv_v);
        if (drv_v)
            snprintf(err, n, "driver too old: it supports CUDA %d.%d, this plugin needs %d.%d or newer", drv_v / 1000,
                     drv_v % 1000 / 10, CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
        else
            snprintf(err, n, "CUDA driver not usable (libcuda.so.1 loads, but the runtime finds no driver)");
    } else {
        snprintf(err, n, "CUDA: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    }
    return CS_EUNSUP;
}

static int devices(cs_device_info *out, int max, char *err, size_t n)
{
    int rc = why_none(err, n), count = 0, cur = 0;
    if (rc) return rc;
    cudaGetDeviceCount(&count);
    cudaGetDevice(&cur);
    int drv_v = 0;
    cudaDriverGetVersion(&drv_v);
    for (int i = 0; i < count && i < max; i++) {
        cs_device_info *d = &out[i];
        memset(d, 0, sizeof *d);
        d->driver_version = drv_v;
        struct cudaDeviceProp p;
        cudaError_t e = cudaGetDeviceProperties(&p, i);
        if (e != cudaSuccess) {
            snprintf(d->name, sizeof d->name, "CUDA device %d", i);
            snprintf(d->why, sizeof d->why, "cannot query it: %s", cudaGetErrorString(e));
            continue;
        }
        snprintf(d->name, sizeof d->name, "%s", p.name);
        d->cc_major = p.major, d->cc_minor = p.minor;
        d->total_bytes = p.totalGlobalMem;
        /* free memory and a usable image need a context on the device */
        size_t fr = 0, tot = 0;
        if ((e = cudaSetDevice(i)) != cudaSuccess || (e = cudaMemGetInfo(&fr, &tot)) != cudaSuccess) {
            snprintf(d->why, sizeof d->why, "cannot open it: %s", cudaGetErrorString(e));
        } else {
            d->free_bytes = fr;
            d->usable = cs_cuda_has_image(d->why, sizeof d->why);
        }
        (void)cudaGetLastError();
    }
    cudaSetDevice(cur);
    (void)cudaGetLastError();
    return count;
}

static int active_dev = -1;

static void plugin_shutdown(void);

/* starts memory and cuBLAS on device i */
static int start_on(int i, char *err, size_t n)
{
    cudaError_t e = cudaSetDevice(i);
    if (e != cudaSuccess) {
        snprintf(err, n, "CUDA: cannot use GPU %d: %s", i, cudaGetErrorString(e));
        (void)cudaGetLastError();
        return CS_EDEVICE;
    }
    int rc = cs_cuda_mem_init(err, n);
    if (!rc && (rc = cs_cuda_gemm_init(err, n))) cs_cuda_mem_shutdown();
    if (!rc) active_dev = i;
    return rc;
}

static int init(char *err, size_t n)
{
    cs_device_info dev[16];
    int count = devices(dev, 16, err, n);
    if (count < 0) return count;
    for (int i = 0; i < count && i < 16; i++)   /* the first usable device (use_device picks another) */
        if (dev[i].usable) return start_on(i, err, n);
    snprintf(err, n, "no usable CUDA device: GPU 0 (%s, sm_%d%d): %s", dev[0].name, dev[0].cc_major, dev[0].cc_minor,
             dev[0].why);
    return CS_EUNSUP;
}

static int use_device(int index, char *err, size_t n)
{
    cs_device_info dev[16];
    int count = devices(dev, 16, err, n);
    if (count < 0) return count;
    if (index >= count || index >= 16) {
        snprintf(err, n, "there %s %d CUDA device%s (cuda:0%s)", count == 1 ? "is" : "are", count, count == 1 ? "" : "s",
                 count > 1 ? " and up" : "");
        return CS_EARG;
    }
    if (!dev[index].usable) {
        snprintf(err, n, "GPU %d (%s, sm_%d%d): %s", index, dev[index].name, dev[index].cc_major, dev[index].cc_minor,
                 dev[index].why);
        return CS_EUNSUP;
    }
    if (index == active_dev) return 0;
    plugin_shutdown();
    return start_on(index, err, n);
}

static int mem_info(size_t *fr, size_t *tot, char *name, size_t len)
{
    struct cudaDeviceProp p;
    if (active_dev < 0 || cudaMemGetInfo(fr, tot) != cudaSuccess ||
        cudaGetDeviceProperties(&p, active_dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return CS_EDEVICE;
    }
    snprintf(name, len, "%s (cuda:%d)", p.name, active_dev);
    return 0;
}

static void plugin_shutdown(void)
{
    if (active_dev < 0) return;
    cs_cuda_upload_shutdown();
    cs_cuda_gemm_shutdown();   /* gives its workspace back to mem.c's pool first */
    cs_cuda_mem_shutdown();
    active_dev = -1;
}

static const cs_dev_ops ops = {
    .alloc = cs_cuda_alloc,
    .free = cs_cuda_free,
    .upload = cs_cuda_upload,
    .download = cs_cuda_download,
    .sync = cs_cuda_sync,
    .copy2d = cs_cuda_copy2d,
    .fill = cs_cuda_fill,
    .weight_f32 = cs_cuda_weight_f32,
    .forget = cs_cuda_forget,
    .set_precision = cs_cuda_set_precision,
    .mem_peak = cs_cuda_mem_peak,
    .errmsg = cs_cuda_errmsg,
    .mem_info = mem_info,
    .linear = cs_cuda_linear,
    .sgemm = cs_cuda_sgemm,
    .layernorm = cs_cuda_layernorm,
    .unary = cs_cuda_unary,
    .add = cs_cuda_add,
    .scale = cs_cuda_scale,
    .axpy = cs_cuda_axpy,
    .grn = cs_cuda_grn,
    .modulate = cs_cuda_modulate,
    .channel_affine = cs_cuda_channel_affine,
    .dwconv3x3 = cs_cuda_dwconv3x3,
    .conv2d = cs_cuda_conv2d,
    .conv_transpose2d = cs_cuda_conv_transpose2d,
    .attention = cs_cuda_attention,
    .resize_bilinear = cs_cuda_resize_bilinear,
    .pixel_shuffle = cs_cuda_pixel_shuffle,
    .transpose = cs_cuda_transpose,
    .concat_channels = cs_cuda_concat_channels,
    .embed_rows = cs_cuda_embed_rows,
    .r_embed = cs_cuda_r_embed,
    .mlp_block = cs_cuda_mlp_block,
    .attn_block = cs_cuda_attn_block,
    .ts_block = cs_cuda_ts_block,
    .attention_cat = cs_cuda_attention_cat,
    .graph_begin = cs_cuda_graph_begin,
    .graph_end = cs_cuda_graph_end,
    .graph_launch = cs_cuda_graph_launch,
    .graph_free = cs_cuda_graph_free,
    .sgemm_tn = cs_cuda_sgemm_tn,
    .linear_backward = cs_cuda_linear_backward,
    .layernorm_backward = cs_cuda_layernorm_backward,
    .gelu_backward = cs_cuda_gelu_backward,
    .silu_backward = cs_cuda_silu_backward,
    .grn_backward = cs_cuda_grn_backward,
    .modulate_backward = cs_cuda_modulate_backward,
    .dwconv_backward = cs_cuda_dwconv_backward,
    .attention_backward = cs_cuda_attention_backward,
    .weight_rw = cs_cuda_weight_rw,
    .sumsq = cs_cuda_sumsq,
    .adamw_update = cs_cuda_adamw_update,
    .adafactor_update = cs_cuda_adafactor_update,
    .weight_to_f32 = cs_cuda_weight_to_f32,
    .sa_block = cs_cuda_sa_block,
};

static char version[128];
static cs_backend table = {.abi = CS_BACKEND_ABI, .name = "cuda", .version = version, .init = init,
                           .shutdown = plugin_shutdown, .devices = devices, .ops = &ops,
                           .use_device = use_device};

VISIBLE const cs_backend *cascade_backend_entry(void)
{
    if (!version[0])
        snprintf(version, sizeof version, "CUDA runtime %d.%d (static), cuBLAS, %s", CUDART_VERSION / 1000,
                 CUDART_VERSION % 1000 / 10, CS_CUDA_ARCHS);
    return &table;
}
