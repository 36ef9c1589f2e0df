/* The learning-rate schedules (src/lr_sched.c) against diffusers' own
 * scheduler functions as kohya calls them: tests/data/lr_sched/lr.txt,
 * written by tests/ref/lr_sched_ref.py (the lr of every optimizer step of
 * 17 cases, --lr_warmup_steps as steps, ratios and a percentage). Then the
 * parser's refusals and the checks kohya / diffusers make. */
#include "check.h"
#include "error.h"
#include "lr_sched.h"

#include <string.h>

static int cases(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) { /* in the tree: never a skip */
        printf("ERROR: %s: cannot open\n", path);
        return 99;
    }
    char line[256], kind[64], warm[64];
    cs_lr_sched s;
    int n_cases = 0, n_steps = 0, have = 0;
    while (fgets(line, sizeof line, f)) {
        long long step;
        double want;
        if (!strncmp(line, "case ", 5)) {
            int64_t steps;
            double ratio;
            long long total;
            memset(&s, 0, sizeof s);
            have = sscanf(line, "case %63s %63s %lld %d %lf %lf", kind, warm, &total, &s.cycles, &s.power, &s.lr) == 6;
            CHECK(have, "bad case line: %s", line);
            if (!have) continue;
            s.total = total;
            have = !cs_lr_kind_parse(kind, &s.kind) && !cs_lr_warmup_parse(warm, &steps, &ratio);
            CHECK(have, "%s %s: %s", kind, warm, cs_last_error());
            s.warmup = cs_lr_warmup_resolve(steps, ratio, s.total);
            CHECK(have && !cs_lr_sched_check(&s), "%s: %s", line, cs_last_error());
            n_cases++;
        } else if (have && sscanf(line, "%lld %lf", &step, &want) == 2) {
            double got = cs_lr_at(&s, step);
            /* the same double operations as Python's: equal but for libm's last bit */
            CHECK(fabs(got - want) <= 4e-16 * fabs(want),
                  "%s warmup %s total %lld step %lld: lr %.17g, diffusers %.17g", kind, warm, (long long)s.total, step,
                  got, want);
            n_steps++;
        }
    }
    fclose(f);
    CHECK(n_cases == 17 && n_steps > 300, "read %d cases, %d steps", n_cases, n_steps);
    return 0;
}

static void parse_cases(void)
{
    int64_t st;
    double r;
    CHECK(!cs_lr_warmup_parse("12", &st, &r) && st == 12 && r < 0, "12");
    CHECK(!cs_lr_warmup_parse("0", &st, &r) && st == 0 && r == 0, "0 is kohya's float 0.0");
    CHECK(!cs_lr_warmup_parse("0.1", &st, &r) && r == 0.1, "0.1");
    CHECK(!cs_lr_warmup_parse("5%", &st, &r) && r == 0.05, "5%%");
    CHECK(cs_lr_warmup_resolve(0, 0.1, 55) == 5, "int(5.5)");
    CHECK(cs_lr_warmup_resolve(7, -1, 55) == 7, "steps");
    const char *badv[] = {"1.5", "-1", "-0.5", "x", "", "%", "2x", "nan", "1e400"};
    for (size_t i = 0; i < sizeof badv / sizeof *badv; i++)
        CHECK(cs_lr_warmup_parse(badv[i], &st, &r) == CS_EARG, "'%s' accepted", badv[i]);
    cs_lr_kind k;
    CHECK(cs_lr_kind_parse("adafactor", &k) == CS_EARG && strstr(cs_last_error(), "cosine_with_restarts"), "adafactor");
    CHECK(cs_lr_kind_parse("cosine", &k) == 0 && k == CS_LR_COSINE && !strcmp(cs_lr_kind_name(k), "cosine"), "cosine");
    cs_lr_sched s = {CS_LR_CONSTANT, 1e-4, 3, 10, 1, 1.0};
    CHECK(cs_lr_sched_check(&s) == CS_EARG, "constant with warmup (kohya refuses it)");
    s.kind = CS_LR_POLYNOMIAL, s.lr = 1e-7;
    CHECK(cs_lr_sched_check(&s) == CS_EARG, "polynomial at lr = lr_end (diffusers refuses it)");
    s.kind = CS_LR_COSINE_WITH_RESTARTS, s.lr = 1e-4, s.cycles = -1;
    CHECK(cs_lr_sched_check(&s) == CS_EARG, "-1 cycles");
    s.cycles = 1;
    CHECK(cs_lr_sched_check(&s) == 0, "%s", cs_last_error());
}

int main(void)
{
    const char *top = getenv("TOP_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/lr_sched/lr.txt", top && *top ? top : ".");
    int rc = cases(path);
    if (rc) return rc;
    parse_cases();
    return check_exit();
}
