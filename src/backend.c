#include "backend.h"
#include "device.h"

#include "error.h"
#include "infile.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CS_PLUGIN_DIR
#define CS_PLUGIN_DIR "/usr/local/lib/cascade"
#endif

/* Per thread, like cs_dev (device.h): the thread that selects a backend is
 * the one whose forwards run on it, so two libcascade contexts in one
 * process can use different devices. (The plugin itself is loaded once;
 * dlopen counts the references.) */
static _Thread_local const cs_backend *active;
static _Thread_local void *handle;

const cs_backend *cs_backend_active(void) { return active; }
const char *cs_backend_name(void) { return active ? active->name : "cpu"; }

/* A plugin's state (its device, stream, memory) is one per process while
 * active and handle are per thread: init runs for the first thread that
 * selects a plugin, shutdown for the last that lets it go. Selecting the
 * active plugin again must not restart it (a restart and the release of
 * the "old" one shut down the new state). */
static pthread_mutex_t users_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const cs_backend *b;
    int n;
} users[8];

static int plugin_start(const cs_backend *b, char *err, size_t n)
{
    pthread_mutex_lock(&users_lock);
    int rc = 0, free_slot = -1;
    for (int i = 0; i < 8; i++) {
        if (users[i].b == b) {
            users[i].n++;
            pthread_mutex_unlock(&users_lock);
            return 0;
        }
        if (!users[i].b && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) {
        snprintf(err, n, "too many plugins in one process");
        rc = CS_EUNSUP;
    } else if (!b->init || (rc = b->init(err, n)) == 0) {
        users[free_slot].b = b, users[free_slot].n = 1;
    }
    pthread_mutex_unlock(&users_lock);
    return rc;
}

static void plugin_stop(const cs_backend *b)
{
    pthread_mutex_lock(&users_lock);
    for (int i = 0; i < 8; i++)
        if (users[i].b == b && --users[i].n == 0) {
            if (b->shutdown) b->shutdown();
            users[i].b = NULL;
        }
    pthread_mutex_unlock(&users_lock);
}

void cs_backend_release(void)
{
    if (active && active->ops) cs_dev_graphs_drop();
    if (active) plugin_stop(active);
    active = NULL;
    if (handle) dlclose(handle);
    handle = NULL;
}

/* dlopen + entry + ABI check. RTLD_NODELETE: a plugin that links a runtime
 * statically (cudart) registers exit handlers and may start threads, so its
 * code must stay mapped after dlclose until the process ends. */
static int open_plugin(const char *path, const char *name, void **hp, const cs_backend **bp)
{
    /* dlopen of a FIFO would block forever: a plugin must be a regular file */
    if (cs_infile_open(path, "plugin", CS_MAX_PLUGIN_FILE, NULL, NULL)) {
        char why[1200];
        snprintf(why, sizeof why, "%s", cs_last_error());
        return cs_error(CS_EUNSUP, "backend '%s': cannot load %s", name, why);
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
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
    *hp = h;
    *bp = b;
    return 0;
}

/* Every op of a device's op set, so that a plugin with a gap is refused at
 * load: in device mode there is no CPU fallback (the data is on the device),
 * and ops.c calls each op unchecked. */
typedef void (*any_fn)(void);
#define OP(f) {offsetof(cs_dev_ops, f), #f}
static const struct {
    size_t off;
    const char *name;
} dev_op_fields[] = {
    OP(alloc), OP(free), OP(upload), OP(download), OP(sync), OP(copy2d), OP(fill), OP(weight_f32), OP(forget),
    OP(set_precision), OP(mem_peak), OP(errmsg), OP(mem_info), OP(linear), OP(sgemm), OP(layernorm), OP(unary), OP(add),
    OP(scale), OP(axpy), OP(grn), OP(modulate), OP(channel_affine), OP(dwconv3x3), OP(conv2d), OP(conv_transpose2d),
    OP(attention), OP(resize_bilinear), OP(pixel_shuffle), OP(transpose), OP(concat_channels), OP(embed_rows),
    OP(r_embed), OP(mlp_block), OP(attention_cat), OP(attn_block), OP(ts_block),
};
/* the optional calls at the end of cs_dev_ops: the graph calls (all or
 * none), the backward ops (each on its own), the optimizer ops (all or
 * none), weight_to_f32, sa_block */
#define GRAPH_OPS 4
#define BACKWARD_OPS 9
#define OPTIM_OPS 4
#define WIDEN_OPS 1
#define STAGE_A_OPS 1
#undef OP
_Static_assert((sizeof dev_op_fields / sizeof dev_op_fields[0] + GRAPH_OPS + BACKWARD_OPS + OPTIM_OPS + WIDEN_OPS +
                STAGE_A_OPS) *
                       sizeof(any_fn) ==
                   sizeof(cs_dev_ops),
               "dev_op_fields must list every field of cs_dev_ops");

static const char *missing_op(const cs_dev_ops *ops)
{
    for (size_t i = 0; ops && i < sizeof dev_op_fields / sizeof dev_op_fields[0]; i++) {
        any_fn f;
        memcpy(&f, (const char *)ops + dev_op_fields[i].off, sizeof f);
        if (!f) return dev_op_fields[i].name;
    }
    if (!ops) return NULL;
    int graphs = !!ops->graph_begin + !!ops->graph_end + !!ops->graph_launch + !!ops->graph_free;
    if (graphs % GRAPH_OPS) return "some of the graph calls (all four or none)";
    int optim = !!ops->weight_rw + !!ops->sumsq + !!ops->adamw_update + !!ops->adafactor_update;
    if (optim % OPTIM_OPS) return "some of the optimizer ops (all four or none)";
    return NULL;
}

static int load(const char *path, const char *name)
{
    void *h;
    const cs_backend *b;
    int rc = open_plugin(path, name, &h, &b);
    if (rc) return rc;
    const char *gap = missing_op(b->ops);
    if (gap) {
        dlclose(h);
        return cs_error(CS_EUNSUP, "backend '%s': %s: its op set lacks %s", name, path, gap);
    }
    if (b == active) {   /* already this thread's: it stays as it is */
        dlclose(h);
        return 0;
    }
    char err[256] = "";
    if (plugin_start(b, err, sizeof err)) {
        dlclose(h);
        return cs_error(CS_EUNSUP, "backend '%s': not usable here: %s", name, err[0] ? err : "init failed");
    }
    cs_backend_release();
    active = b;
    handle = h;
    return 0;
}

/* The plugin file for NAME (a path, or libcascade-NAME.so in
 * $CASCADE_PLUGIN_DIR, then the install's plugin folder). */
static int find_plugin(const char *name, char *path, size_t pathlen)
{
    if (strchr(name, '/')) {
        snprintf(path, pathlen, "%s", name);
        return 0;
    }
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return cs_error(CS_EARG, "backend '%s': not a backend name (use cpu, cuda, or a path to a plugin)", name);
    const char *env = getenv("CASCADE_PLUGIN_DIR");
    const char *dirs[2] = {env && *env ? env : NULL, CS_PLUGIN_DIR};
    char tried[2200] = "";
    for (int i = 0; i < 2; i++) {
        if (!dirs[i]) continue;
        snprintf(path, pathlen, "%s/libcascade-%s.so", dirs[i], name);
        if (cs_infile_open(path, "plugin", CS_MAX_PLUGIN_FILE, NULL, NULL) == 0 || errno != ENOENT) return 0;
        size_t o = strlen(tried);
        snprintf(tried + o, sizeof tried - o, "%s%s", o ? ", " : "", path);
    }
    return cs_error(CS_EUNSUP, "backend '%s': plugin not found (looked for %s)", name, tried);
}

int cs_backend_select_device(const char *name, int index)
{
    int rc = cs_backend_select(name);
    if (rc || index < 0 || !active) return rc;
    char err[256] = "";
    if (!active->use_device) {
        if (index == 0) return 0;
        rc = cs_error(CS_EUNSUP, "backend '%s': it runs on one device only (device %d asked for)", name, index);
    } else if (active->use_device(index, err, sizeof err)) {
        rc = cs_error(CS_EUNSUP, "backend '%s': device %d: %s", name, index, err[0] ? err : "not usable");
    }
    if (rc) cs_backend_release();
    return rc;
}

int cs_backend_select(const char *name)
{
    if (!name || !*name) name = getenv("CASCADE_BACKEND");
    if (!name || !*name || !strcmp(name, "cpu")) {
        cs_backend_release();
        return 0;
    }
    char path[1024];
    int rc = find_plugin(name, path, sizeof path);
    return rc ? rc : load(path, name);
}

int cs_backend_describe(const char *name, cs_backend_report *r)
{
    memset(r, 0, sizeof *r);
    int rc = find_plugin(name, r->path, sizeof r->path);
    void *h;
    const cs_backend *b;
    if (rc || (rc = open_plugin(r->path, name, &h, &b))) return rc;
    r->abi = b->abi;
    snprintf(r->version, sizeof r->version, "%s", b->version ? b->version : "");
    if (!b->devices) {
        snprintf(r->reason, sizeof r->reason, "the plugin lists no devices");
    } else {
        int n = b->devices(r->dev, CS_MAX_LISTED, r->reason, sizeof r->reason);
        if (n < 0 && !r->reason[0]) snprintf(r->reason, sizeof r->reason, "device query failed");
        if (n == 0 && !r->reason[0]) snprintf(r->reason, sizeof r->reason, "no device");
        r->ndev = n > 0 ? n : 0;
    }
    dlclose(h);   /* drops this reference; an active plugin keeps its own */
    return 0;
}
