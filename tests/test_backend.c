/* Backend plugins: a fake plugin is loaded by path, its sgemm serves
 * cs_linear (results equal the CPU path to rounding); a wrong ABI, a missing
 * plugin, a failing init and a bad name each give a clear error and leave
 * the CPU path active. cs_backend_describe lists a plugin's devices (or the
 * reason there are none) without activating it. */
#include "backend.h"
#include "error.h"
#include "ops.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %d: ", __LINE__); printf(__VA_ARGS__); printf("\n"); fails++; } } while (0)

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/.libs";
    char good[1024], bad[1024], old[1024];
    snprintf(good, sizeof good, "%s/libcascade-fake.so", dir);
    snprintf(bad, sizeof bad, "%s/libcascade-fakeabi.so", dir);
    snprintf(old, sizeof old, "%s/libcascade-fakeabi1.so", dir);
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
    CHECK(cs_linear(x, M, K, 0, &W, NULL, y1, 0, 0) == 0, "fake linear: %s", cs_last_error());
    void *h = dlopen(good, RTLD_NOW | RTLD_NOLOAD);
    unsigned long *calls = h ? dlsym(h, "fake_backend_calls") : NULL;
    CHECK(calls && *calls == 1, "the plugin's sgemm was not called once (%lu)", calls ? *calls : 0ul);
    if (h) dlclose(h);
    double d = 0, r = 0;
    for (int i = 0; i < M * N; i++) d += (y1[i] - y0[i]) * (double)(y1[i] - y0[i]), r += (double)y0[i] * y0[i];
    CHECK(sqrt(d / r) < 1e-6, "plugin result differs: rel %g", sqrt(d / r));

    CHECK(cs_backend_select(bad) < 0 && strstr(cs_last_error(), "plugin ABI 999"), "wrong ABI: %s", cs_last_error());
    char want[128];
    snprintf(want, sizeof want, "plugin ABI 1, this cascade needs %d", CS_BACKEND_ABI);
    CHECK(CS_BACKEND_ABI == 2 && cs_backend_select(old) < 0 && strstr(cs_last_error(), want), "ABI-1 plugin: %s",
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
    printf("%s\n", fails ? "FAIL" : "PASS");
    return fails ? 1 : 0;
}
