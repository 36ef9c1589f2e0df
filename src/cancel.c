/* Cancellation flag and the signal-safe cleanup list (see cancel.h). */
#include "cancel.h"

#include "error.h"

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t flag;

volatile sig_atomic_t *cs_cancel_flag(void) { return &flag; }

void cs_cancel_request(int why)
{
    if (!flag)
        flag = why > 0 ? why : 1;
}

static _Thread_local volatile sig_atomic_t *bound;

void cs_cancel_bind(volatile sig_atomic_t *f) { bound = f; }

int cs_cancel_pending(void) { return flag ? flag : bound ? *bound : 0; }

int cs_cancel_check(void)
{
    return cs_cancel_pending() ? cs_error(CS_EINTR, "interrupted") : 0;
}

void cs_cancel_reset(void) { flag = 0; }

/* Slots with a state word: FREE -> (claimed by CAS) BUSY while the path is
 * copied -> FILE/DIR (visible to the handler) -> FREE. A handler only reads
 * slots in state FILE/DIR, whose path is complete; paths are fixed arrays so
 * nothing is freed under it. The lock-free states make this safe whatever
 * thread the signal lands on. */
enum { FREE = 0, BUSY, FILE_, DIR_ };
#define SLOTS 192

static struct {
    atomic_int state;
    char path[PATH_MAX];
} slot[SLOTS];

int cs_cleanup_add(const char *path, int is_dir)
{
    size_t n = strlen(path);
    if (n >= PATH_MAX)
        return 0;
    for (int i = 0; i < SLOTS; i++) {
        int expect = FREE;
        if (!atomic_compare_exchange_strong(&slot[i].state, &expect, BUSY))
            continue;
        memcpy(slot[i].path, path, n + 1);
        atomic_store(&slot[i].state, is_dir ? DIR_ : FILE_);
        return i + 1;
    }
    return 0;
}

void cs_cleanup_del(int h)
{
    if (h > 0 && h <= SLOTS)
        atomic_store(&slot[h - 1].state, FREE);
}

void cs_cleanup_run(void)
{
    for (int i = SLOTS - 1; i >= 0; i--)
        if (atomic_load(&slot[i].state) == FILE_)
            unlink(slot[i].path);
    for (int i = SLOTS - 1; i >= 0; i--)
        if (atomic_load(&slot[i].state) == DIR_)
            rmdir(slot[i].path);
}
