/* Backend plugins: the fake device plugin (tests/fake_backend.c) is loaded
 * by path; cs_linear in device mode (cs_dev_args) runs the plugin's op and
 * gives the CPU's result bit for bit; a host pointer passed as a device
 * pointer is refused with an error, not a crash; device memory cannot be
 * touched by the host (a child that tries dies); weight copies are cached
 * until forget(). A wrong ABI, a missing plugin, a failing init, a bad name
 * and an op set with a gap each give a clear error and leave the active
 * backend as it was. A plugin without the optional backward ops loads, and
 * grad.h's functions then give CS_EUNSUP in device mode (the void ones at
 * the forward's end); with them, the device's op runs.
 * cs_backend_describe lists a plugin's devices (or the reason there are
 * none) without activating it. */
#include "check.h"
#include "backend.h"
#include "device.h"
#include "error.h"
#include "grad.h"
#include "ops.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/.libs";
    char good[1024], bad[1024], old[1024], noop[1024], nobw[1024];
    snprintf(good, sizeof good, "%s/libcascade-fake.so", dir);
    snprintf(bad, sizeof bad, "%s/libcascade-fakeabi.so", dir);
    snprintf(old, sizeof old, "%s/libcascade-fakeabi1.so", dir);
    snprintf(noop, sizeof noop, "%s/libcascade-fakenoop.so", dir);
    snprintf(nobw, sizeof nobw, "%s/libcascade-fakenobw.so", dir);
    cs_threads_set(1);
    enum { M = 37, K = 53, N = 29 };
    static float x[M * K], w[N * K], y0[M * N], y1[M * N];
    for (int i = 0; i < M * K; i++) x[i] = (float)((i * 7919) % 101) / 50.0f - 1.0f;
    for (int i = 0; i < N * K; i++) w[i] = (float)((i * 104729) % 97) / 48.0f - 1.0f;
    cs_tensor W = {.dtype = CS_F32, .ndim = 2, .shape = {N, K}, .data = w, .name = "w"};
    CHECK(cs_linear(x, M, K, 0, &W, NULL, y0, 0, 0) == 0, "cpu linear: %s", cs_last_error());
    CHECK(!strcmp(cs_backend_name(), "cpu"), "default backend %s", cs_backend_name());

    CHECK(cs_backend_select(good) == 0, "load fake: %s", cs_last_error());
    CHECK(!strcmp(cs_backend_name(), "fake"), "active %s", cs_backend_name());
    void *h = dlopen(good, RTLD_NOW | RTLD_NOLOAD);
    unsigned long *calls = h ? dlsym(h, "fake_backend_calls") : NULL;
    const char **last = h ? dlsym(h, "fake_backend_last_op") : NULL;
    CHECK(calls && last, "the fake plugin exports no call counter");
    static unsigned long zero;
    static const char *none = "";
    if (!calls) calls = &zero, last = &none;

    /* outside device mode the CPU computes, plugin or not */
    unsigned long c0 = *calls;
    CHECK(cs_linear(x, M, K, 0, &W, NULL, y1, 0, 0) == 0 && !memcmp(y0, y1, sizeof y0) && *calls == c0,
          "host-mode linear with the plugin active: %s, %lu op calls", cs_last_error(), *calls - c0);

    /* device mode: the plugin's linear, the CPU's bits */
    const cs_dev_ops *d = cs_dev_pick();
    CHECK(d && d == cs_backend_active()->ops, "cs_dev_pick gave no op set");
    memset(y1, 0, sizeof y1);
    cs_dev_args a;
    cs_dev_args_begin(&a, d);
    const float *dx = cs_dev_in(&a, x, M * K);
    float *dy = cs_dev_out(&a, y1, M * N);
    CHECK(cs_dev == d && cs_dev_pick() == NULL, "device mode not entered (or nested forwards allowed)");
    c0 = *calls;
    int rc = a.rc ? a.rc : cs_linear(dx, M, K, 0, &W, NULL, dy, 0, 0);
    CHECK(rc == 0 && *calls == c0 + 1 && !strcmp(*last, "linear"), "device linear: rc %d, %lu calls, last op '%s': %s",
          rc, *calls - c0, *last, cs_last_error());
    /* device memory is not host memory: a child that reads it dies */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);   /* quiet: under ASan the fault is reported */
        if (null >= 0) dup2(null, 2);
        volatile float v = dx[0];
        (void)v;
        _exit(0);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && !(WIFEXITED(st) && WEXITSTATUS(st) == 0),
          "the host read device memory without a fault");
    rc = cs_dev_args_finish(&a, rc);
    CHECK(rc == 0 && cs_dev == NULL, "finish: %s", cs_last_error());
    CHECK(!memcmp(y0, y1, sizeof y0), "device result differs from the CPU's");

    /* a host pointer as a device pointer: an error, no crash, no download */
    memset(y1, 0, sizeof y1);
    cs_dev_args_begin(&a, d);
    dy = cs_dev_out(&a, y1, M * N);
    rc = cs_linear(x, M, K, 0, &W, NULL, dy, 0, 0);
    CHECK(rc < 0 && strstr(cs_last_error(), "is not a device pointer") && cs_dev_error() == rc,
          "host x in device mode: rc %d: %s", rc, cs_last_error());
    cs_layernorm(dy, dy, M, N, 1e-5f, y0, y0);   /* host w, b; a void op: the error waits for the end */
    rc = cs_dev_args_finish(&a, 0);
    CHECK(rc < 0 && strstr(cs_last_error(), "linear layer on the fake device failed") && y1[0] == 0.0f && !cs_dev,
          "forward with a host pointer: rc %d: %s", rc, cs_last_error());

    /* weights: one device copy per host pointer until forget() */
    char err[256] = "";
    const float *w1 = d->weight_f32(&W, err, sizeof err), *w2 = d->weight_f32(&W, err, sizeof err);
    CHECK(w1 && w1 == w2, "weight copy not cached: %s", err);
    w[3] += 1.0f;
    CHECK(!d->weight_f32(&W, err, sizeof err) && strstr(err, "changed since"), "stale weight copy used: %s", err);
    d->forget(w, sizeof w);
    w2 = d->weight_f32(&W, err, sizeof err);
    CHECK(w2, "weight after forget: %s", err);
    w[3] -= 1.0f;
    d->forget(w, sizeof w);
    if (h) dlclose(h);

    CHECK(cs_backend_select(bad) < 0 && strstr(cs_last_error(), "plugin ABI 999"), "wrong ABI: %s", cs_last_error());
    CHECK(cs_backend_select(noop) < 0 && strstr(cs_last_error(), "its op set lacks embed_rows") &&
              !strcmp(cs_backend_name(), "fake"),
          "plugin with a gap in its op set: %s", cs_last_error());
    char want[128];
    snprintf(want, sizeof want, "plugin ABI 1, this cascade needs %d", CS_BACKEND_ABI);
    CHECK(CS_BACKEND_ABI == 10 && cs_backend_select(old) < 0 && strstr(cs_last_error(), want), "ABI-1 plugin: %s",
          cs_last_error());

    /* describe: devices listed without activating the plugin */
    static cs_backend_report rep;
    CHECK(cs_backend_describe(good, &rep) == 0, "describe: %s", cs_last_error());
    CHECK(rep.abi == CS_BACKEND_ABI && !strcmp(rep.version, "fake 1.0") && !strcmp(rep.path, good), "report: %d %s %s",
          rep.abi, rep.version, rep.path);
    CHECK(rep.ndev == 2 && !strcmp(rep.dev[0].name, "Fake GPU 0") && rep.dev[0].cc_major == 8 &&
              rep.dev[0].usable && !rep.dev[1].usable && strstr(rep.dev[1].why, "sm_90"),
          "devices: %d %s", rep.ndev, rep.dev[0].name);
    CHECK(!strcmp(cs_backend_name(), "fake"), "describe changed the active backend");
    setenv("FAKE_BACKEND_NODEV", "1", 1);
    CHECK(cs_backend_describe(good, &rep) == 0 && rep.ndev == 0 && !strcmp(rep.reason, "no fake device"),
          "no devices: %d '%s'", rep.ndev, rep.reason);
    unsetenv("FAKE_BACKEND_NODEV");
    CHECK(cs_backend_describe(bad, &rep) < 0 && strstr(cs_last_error(), "plugin ABI 999"), "describe wrong ABI: %s",
          cs_last_error());
    CHECK(!strcmp(cs_backend_name(), "fake"), "a failed load replaced the active backend");

    /* backward ops: the device's where it has them, CS_EUNSUP where not */
    static float g[M * N], gx[M * K], gW[N * K];
    for (int i = 0; i < M * N; i++) g[i] = (float)(i % 13) / 6.0f - 1.0f;
    for (int pass = 0; pass < 2; pass++) {
        CHECK(cs_backend_select(pass ? nobw : good) == 0, "load %s: %s", pass ? nobw : good, cs_last_error());
        d = cs_dev_pick();
        cs_dev_args_begin(&a, d);
        const float *px = cs_dev_in(&a, x, M * K), *pg = cs_dev_in(&a, g, M * N);
        float *pgx = cs_dev_out(&a, gx, M * K), *pgW = cs_dev_out(&a, gW, N * K);
        if (pgW && !a.rc) cs_fill(pgW, 0.0f, N * K);
        rc = a.rc ? a.rc : cs_linear_backward(px, M, K, 0, &W, pg, 0, pgx, 0, pgW, NULL);
        if (pass) {
            CHECK(rc == CS_EUNSUP && strstr(cs_last_error(), "Linear backward: not in this device's op set"),
                  "linear backward without the device op: rc %d: %s", rc, cs_last_error());
            cs_gelu_backward(px, px, pgx, M * K);   /* a void one: the error waits for the end */
            rc = cs_dev_args_finish(&a, 0);
            CHECK(rc == CS_EUNSUP && strstr(cs_last_error(), "GELU backward (not in this device's op set)"),
                  "void backward without the device op: rc %d: %s", rc, cs_last_error());
        } else {
            /* the plugin may have been loaded anew: its counters looked up again */
            void *hg = dlopen(good, RTLD_NOW | RTLD_NOLOAD);
            const char **lop = hg ? dlsym(hg, "fake_backend_last_op") : NULL;
            CHECK(rc == 0 && lop && !strcmp(*lop, "linear_backward"), "device linear backward: rc %d, last op '%s': %s",
                  rc, lop ? *lop : "?", cs_last_error());
            if (hg) dlclose(hg);
            rc = cs_dev_args_finish(&a, rc);
            CHECK(rc == 0, "linear backward finish: %s", cs_last_error());
        }
    }
    CHECK(cs_backend_select(good) == 0, "reload fake: %s", cs_last_error());
    CHECK(cs_backend_select("cpu") == 0 && !strcmp(cs_backend_name(), "cpu"), "back to cpu");
    setenv("CASCADE_PLUGIN_DIR", "/nonexistent", 1);
    CHECK(cs_backend_select("cuda") < 0 && strstr(cs_last_error(), "/nonexistent/libcascade-cuda.so"),
          "missing plugin: %s", cs_last_error());
    CHECK(cs_backend_select("./no-such-plugin.so") < 0 && strstr(cs_last_error(), "cannot load ./no-such-plugin.so"),
          "missing path: %s", cs_last_error());
    CHECK(cs_backend_select("Bad Name") < 0 && strstr(cs_last_error(), "not a backend name"), "bad name: %s",
          cs_last_error());
    setenv("FAKE_BACKEND_FAIL", "1", 1);
    CHECK(cs_backend_select(good) < 0 && strstr(cs_last_error(), "not usable here"), "failing init: %s",
          cs_last_error());
    CHECK(!strcmp(cs_backend_name(), "cpu"), "CPU path not kept");
    printf("%s\n", failures ? "FAIL" : "PASS");
    return check_exit();
}
