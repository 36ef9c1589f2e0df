#include "backend.h"

#include "error.h"
#include "infile.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CS_PLUGIN_DIR
#define CS_PLUGIN_DIR "/usr/local/lib/cascade"
#endif

static const cs_backend *active;
static void *handle;

const cs_backend *cs_backend_active(void) { return active; }
const char *cs_backend_name(void) { return active ? active->name : "cpu"; }

void cs_backend_release(void)
{
    if (active && active->shutdown) active->shutdown();
    active = NULL;
    if (handle) dlclose(handle);
    handle = NULL;
}

static int load(const char *path, const char *name)
{
    /* dlopen of a FIFO would block forever: a plugin must be a regular file */
    if (cs_infile_open(path, "plugin", CS_MAX_PLUGIN_FILE, NULL, NULL)) {
        char why[1200];
        snprintf(why, sizeof why, "%s", cs_last_error());
        return cs_error(CS_EUNSUP, "backend '%s': cannot load %s", name, why);
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return cs_error(CS_EUNSUP, "backend '%s': cannot load %s: %s", name, path, dlerror());
    const cs_backend *(*entry)(void) = (const cs_backend *(*)(void))dlsym(h, "cascade_backend_entry");
    const cs_backend *b = entry ? entry() : NULL;
    if (!b) {
        dlclose(h);
        return cs_error(CS_EUNSUP, "backend '%s': %s exports no cascade_backend_entry", name, path);
    }
    if (b->abi != CS_BACKEND_ABI) {
        int abi = b->abi;   /* b lives in the plugin: read before dlclose */
        dlclose(h);
        return cs_error(CS_EUNSUP, "backend '%s': %s has plugin ABI %d, this cascade needs %d", name, path, abi,
                        CS_BACKEND_ABI);
    }
    char err[256] = "";
    if (b->init && b->init(err, sizeof err)) {
        dlclose(h);
        return cs_error(CS_EUNSUP, "backend '%s': not usable here: %s", name, err[0] ? err : "init failed");
    }
    cs_backend_release();
    active = b;
    handle = h;
    return 0;
}

int cs_backend_select(const char *name)
{
    if (!name || !*name) name = getenv("CASCADE_BACKEND");
    if (!name || !*name || !strcmp(name, "cpu")) {
        cs_backend_release();
        return 0;
    }
    if (strchr(name, '/')) return load(name, name);
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return cs_error(CS_EARG, "backend '%s': not a backend name (use cpu, cuda, or a path to a plugin)", name);
    const char *env = getenv("CASCADE_PLUGIN_DIR");
    const char *dirs[2] = {env && *env ? env : NULL, CS_PLUGIN_DIR};
    char tried[2200] = "";
    for (int i = 0; i < 2; i++) {
        if (!dirs[i]) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/libcascade-%s.so", dirs[i], name);
        if (cs_infile_open(path, "plugin", CS_MAX_PLUGIN_FILE, NULL, NULL) == 0 || errno != ENOENT)
            return load(path, name);
        size_t o = strlen(tried);
        snprintf(tried + o, sizeof tried - o, "%s%s", o ? ", " : "", path);
    }
    return cs_error(CS_EUNSUP, "backend '%s': plugin not found (looked for %s)", name, tried);
}
