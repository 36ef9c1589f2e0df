#!/bin/sh
# scripts/download-models against a loopback server that behaves like the
# Hugging Face hub: HEAD on /resolve/main/<file> answers 302 + X-Linked-Size +
# X-Linked-Etag (sha256) for "LFS" files and 200 + ETag (git blob sha1) +
# Content-Length for small files; GET redirects LFS files to /cdn/<file>,
# which honours Range. Faults are switched per file between runs:
# truncate N (the next N GETs stop halfway), badsha (a wrong X-Linked-Etag),
# badetag (a wrong git sha1), fakesize S (HEAD announces S bytes), deny (401),
# etag V (HEAD announces this ETag / X-Linked-Etag), "* anypath" (any other
# path answers 200 "pwned"); values are %-encoded.
# Cases: good download, re-run skips, a transfer cut and resumed within one
# run, a run that gives up and a second run that resumes the .part, wrong
# checksums (LFS and small file), denied access, the auto variant choice, a
# hostile hub (ETags that inject plan lines or terminal escapes, malformed
# hashes and sizes), files of the user's in DEST (moved aside, never deleted),
# links leading out of DEST and FIFOs (refused without hanging).
# python3 is a test tool here (standard library only), not an engine dependency.
TOP=${TOP_SRCDIR:-.}
SCRIPT=$TOP/scripts/download-models
# tests/levels.sh runs every test once per SIMD level; this one does not depend on it
if [ -n "${CASCADE_SIMD:-}" ] && [ -n "${CASCADE_BIN:-}" ] &&
   [ "$CASCADE_SIMD" != "$("$CASCADE_BIN" info --levels 2>/dev/null | head -n 1)" ]; then
    echo "ok (ran at the first SIMD level only: the downloader does not use SIMD)"; exit 0
fi
. "$TOP/tests/shared.sh"
need_tool python3 "runs the loopback hub"
need_tool curl "scripts/download-models uses it"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/download.XXXXXX") || exit 99
srv_pid=
cleanup() { [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail=0
ok() { echo "ok $1"; }
bad() { echo "FAIL $1"; fail=1; }

cat >"$tmp/server.py" <<'EOF'
import hashlib, http.server, os, socketserver, sys, threading, urllib.parse

root, faults_path, log_path, port_path = sys.argv[1:5]
small = {"text_encoder/config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
         "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json"}
lock = threading.Lock()

def faults():
    f = {}
    try:
        for line in open(faults_path):
            p = line.split()
            if len(p) >= 2:
                f.setdefault(p[0], {})[p[1]] = urllib.parse.unquote(p[2]) if len(p) > 2 else "1"
    except FileNotFoundError:
        pass
    return f

def set_fault(rel, key, value):
    f = faults()
    f.setdefault(rel, {})[key] = value
    with open(faults_path, "w") as out:
        for r, kv in f.items():
            for k, v in kv.items():
                out.write(f"{r} {k} {v}\n")

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def log(self):
        with lock, open(log_path, "a") as f:
            f.write(f"{self.command} {self.path} range={self.headers.get('Range', '-')} "
                    f"auth={'yes' if self.headers.get('Authorization') else 'no'}\n")

    def file(self, rel):
        path = os.path.join(root, rel)
        return open(path, "rb").read() if os.path.isfile(path) else None

    def empty(self, code, headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        self.handle_any(head=True)

    def do_GET(self):
        self.handle_any(head=False)

    def handle_any(self, head):
        self.log()
        if self.path.startswith("/resolve/main/"):
            rel = self.path[len("/resolve/main/"):]
            data, fl = self.file(rel), faults().get(rel, {})
            if "deny" in fl:
                return self.empty(401)
            if data is None:
                return self.empty(404)
            if rel in small:   # kept in git: ETag = git blob sha1
                etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                if "badetag" in fl:
                    etag = hashlib.sha1(b"something else").hexdigest()
                etag = fl.get("etag", f'"{etag}"')
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)
                return
            sha = hashlib.sha256(data).hexdigest()
            if "badsha" in fl:
                sha = hashlib.sha256(b"not this file").hexdigest()
            size = fl.get("fakesize", str(len(data)))
            return self.empty(302, [("Location", f"http://127.0.0.1:{self.server.server_port}/cdn/{rel}"),
                                    ("X-Linked-Size", size), ("X-Linked-Etag", fl.get("etag", f'"{sha}"')),
                                    ("ETag", '"not-the-sha"')])
        if self.path.startswith("/cdn/"):
            rel = self.path[len("/cdn/"):]
            data = self.file(rel)
            if data is None:
                return self.empty(404)
            start, code = 0, 200
            r = self.headers.get("Range")
            if r and r.startswith("bytes=") and r.endswith("-"):
                start, code = int(r[6:-1]), 206
                if start >= len(data):
                    return self.empty(416, [("Content-Range", f"bytes */{len(data)}")])
            body = data[start:]
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if code == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if head:
                return
            n = int(faults().get(rel, {}).get("truncate", "0"))
            if n > 0:   # send part of the body, then drop the connection
                set_fault(rel, "truncate", str(n - 1))
                self.wfile.write(body[: max(1, len(body) // 2)])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)
            return
        if "anypath" in faults().get("*", {}):   # hostile: serve any other path
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            if not head:
                self.wfile.write(b"pwned")
            return
        self.empty(404)

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

s = S(("127.0.0.1", 0), H)
with open(port_path + ".tmp", "w") as f:
    f.write(str(s.server_port))
os.rename(port_path + ".tmp", port_path)
s.serve_forever()
EOF

# the served repository: random contents
srv=$tmp/repo
mkdir -p "$srv/text_encoder" "$srv/tokenizer"
rnd() { head -c "$2" /dev/urandom >"$srv/$1"; }
for v in "" _bf16 _lite _lite_bf16; do rnd "stage_c$v.safetensors" 300001; rnd "stage_b$v.safetensors" 200003; done
rnd stage_a.safetensors 100000; rnd effnet_encoder.safetensors 50000; rnd previewer.safetensors 40000
rnd text_encoder/model.safetensors 120000
printf '{"hidden_size": 1280}\n' >"$srv/text_encoder/config.json"
printf '{"a": 1}\n' >"$srv/tokenizer/vocab.json"
printf '#version: 0.2\na b\n' >"$srv/tokenizer/merges.txt"
printf '{}\n' >"$srv/tokenizer/tokenizer_config.json"
printf '{}\n' >"$srv/tokenizer/special_tokens_map.json"

python3 "$tmp/server.py" "$srv" "$tmp/faults" "$tmp/log" "$tmp/port" &
srv_pid=$!
i=0
while [ ! -s "$tmp/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$tmp/port" ] || { echo "ERROR: the test server did not start"; exit 99; }
URL=http://127.0.0.1:$(cat "$tmp/port")/resolve/main
dest=$tmp/models
# under a time limit where timeout(1) exists: a regression (a FIFO read) fails instead of hanging
limit=; command -v timeout >/dev/null && limit="timeout 60"
dl() { $limit sh "$SCRIPT" --repo-url "$URL" --dest "$dest" "$@" >"$tmp/out" 2>"$tmp/err"; }
same() {  # same NAME REL: the downloaded file equals the served one
    if cmp -s "$srv/$2" "$dest/$2"; then ok "$1"; else bad "$1: $2 differs or is missing"; cat "$tmp/err"; fi
}
has() { if grep -qF -- "$3" "$2"; then ok "$1"; else bad "$1: no '$3' in:"; cat "$2"; fi; }
lite="stage_c_lite_bf16.safetensors stage_b_lite_bf16.safetensors stage_a.safetensors effnet_encoder.safetensors
previewer.safetensors text_encoder/model.safetensors text_encoder/config.json tokenizer/vocab.json
tokenizer/merges.txt tokenizer/tokenizer_config.json tokenizer/special_tokens_map.json"

# 1. a good download, everything verified
if dl --variant lite-bf16; then ok good-exit; else bad "good-exit: $(cat "$tmp/err")"; fi
for f in $lite; do same "good-$f" "$f"; done
[ ! -e "$dest/stage_c.safetensors" ] && ok good-only-variant || bad good-only-variant
has good-sha "$tmp/err" "stage_a.safetensors: ok (sha256 verified)"
has good-gitsha "$tmp/err" "tokenizer/vocab.json: ok (gitsha1 verified)"
[ -z "$(find "$dest" -name '*.part' -o -name '*.bad')" ] && ok good-clean || bad good-clean

# 2. a second run downloads nothing
: >"$tmp/log"
if dl --variant lite-bf16; then ok rerun-exit; else bad rerun-exit; fi
if grep -q "^GET" "$tmp/log"; then bad "rerun: files fetched again"; else ok rerun-no-get; fi
has rerun-msg "$tmp/err" "stage_c_lite_bf16.safetensors: up to date"

# 3. a transfer cut halfway is resumed in the same run, with a Range request
rm -f "$dest/stage_c_lite_bf16.safetensors"
echo "stage_c_lite_bf16.safetensors truncate 1" >"$tmp/faults"
: >"$tmp/log"
if dl --variant lite-bf16; then ok cut-exit; else bad "cut-exit: $(cat "$tmp/err")"; fi
same cut-file stage_c_lite_bf16.safetensors
has cut-range "$tmp/log" "GET /cdn/stage_c_lite_bf16.safetensors range=bytes=150000-"
has cut-msg "$tmp/err" "stage_c_lite_bf16.safetensors: resuming at byte 150000"

# 4. a run that gives up keeps the .part; the next run resumes it
rm -f "$dest/stage_b_lite_bf16.safetensors"
echo "stage_b_lite_bf16.safetensors truncate 99" >"$tmp/faults"
if dl --variant lite-bf16; then bad "giveup: exit 0"; else ok giveup-exit; fi
has giveup-msg "$tmp/err" "download incomplete after 5 attempts"
part=$dest/stage_b_lite_bf16.safetensors.part
if [ -f "$part" ] && [ "$(wc -c <"$part")" -gt 0 ] && [ "$(wc -c <"$part")" -lt 200003 ]; then ok giveup-part; else bad giveup-part; fi
kept=$(wc -c <"$part" | tr -d ' ')
: >"$tmp/faults"
: >"$tmp/log"
if dl --variant lite-bf16; then ok resume-exit; else bad "resume-exit: $(cat "$tmp/err")"; fi
same resume-file stage_b_lite_bf16.safetensors
has resume-range "$tmp/log" "GET /cdn/stage_b_lite_bf16.safetensors range=bytes=$kept-"
[ ! -e "$part" ] && ok resume-no-part || bad resume-no-part

# 5. a wrong sha256 keeps the file aside and fails
rm -f "$dest/stage_a.safetensors"
echo "stage_a.safetensors badsha" >"$tmp/faults"
if dl --variant lite-bf16; then bad "badsha: exit 0"; else ok badsha-exit; fi
has badsha-msg "$tmp/err" "stage_a.safetensors: sha256 mismatch: expected"
[ ! -e "$dest/stage_a.safetensors" ] && [ -f "$dest/stage_a.safetensors.bad" ] && ok badsha-aside || bad badsha-aside
: >"$tmp/faults"
rm -f "$dest/stage_a.safetensors.bad"
if dl --variant lite-bf16; then ok badsha-recovered; else bad badsha-recovered; fi
same badsha-file stage_a.safetensors

# 5b. not enough disk: stops before downloading anything
rm -f "$dest/stage_a.safetensors"
echo "stage_a.safetensors fakesize 1099511627776" >"$tmp/faults"   # 1 TiB, the largest size accepted
: >"$tmp/log"
if [ "$(df -Pk "$tmp" | awk 'NR==2 {print $4}')" -ge 1073741824 ]; then
    echo "ok disk # SKIP: 1 TiB free here"
else
    if dl --variant lite-bf16; then bad "disk: exit 0"; else ok disk-exit; fi
    has disk-msg "$tmp/err" "GB to download, only"
    if grep -q "^GET" "$tmp/log"; then bad "disk: downloaded anyway"; else ok disk-no-get; fi
fi
: >"$tmp/faults"
dl --variant lite-bf16

# 6. a wrong git sha1 for a small file
rm -f "$dest/tokenizer/merges.txt"
echo "tokenizer/merges.txt badetag" >"$tmp/faults"
if dl --variant lite-bf16; then bad "badetag: exit 0"; else ok badetag-exit; fi
has badetag-msg "$tmp/err" "tokenizer/merges.txt: gitsha1 mismatch"
: >"$tmp/faults"

# 7. denied access names HF_TOKEN; the token is sent when set
echo "stage_c.safetensors deny" >"$tmp/faults"
if dl --variant full --dry-run; then bad "deny: exit 0"; else ok deny-exit; fi
has deny-msg "$tmp/err" "access denied (HTTP 401)"
has deny-token "$tmp/err" "set HF_TOKEN"
: >"$tmp/faults"
: >"$tmp/log"
HF_TOKEN=secret dl --variant full --dry-run
has token-sent "$tmp/log" "HEAD /resolve/main/stage_c.safetensors range=- auth=yes"

# 8. the plan (dry run): sizes and checksums as announced, nothing written
dl --variant bf16 --dry-run --no-optional
has plan-c "$tmp/out" "stage_c_bf16.safetensors 300001 bytes sha256 $(sha256sum "$srv/stage_c_bf16.safetensors" | cut -d' ' -f1)"
has plan-small "$tmp/out" "text_encoder/config.json"
if grep -q previewer "$tmp/out"; then bad plan-no-optional; else ok plan-no-optional; fi

# 9. auto: from `cascade models --recommend` when cascade is there, else from the announced sizes
if [ -n "$CASCADE_BIN" ] && [ -x "$CASCADE_BIN" ]; then
    CASCADE_MEMORY=100G dl --dry-run; has auto-bin-full "$tmp/err" "Stage C: full, Stage B: full"
    CASCADE_MEMORY=7G dl --dry-run; has auto-bin-lite "$tmp/err" "Stage C: lite, Stage B: lite"
fi
# (a copy of the script, so that it does not find the in-tree ../cascade either)
cp "$SCRIPT" "$tmp/download-models"
est() { CASCADE_BIN=/nonexistent PATH=/usr/bin:/bin sh "$tmp/download-models" --repo-url "$URL" --dest "$dest" "$@" >"$tmp/out" 2>"$tmp/err"; }
{
    echo "stage_c.safetensors fakesize 14356417000"; echo "stage_c_bf16.safetensors fakesize 7178210000"
    echo "stage_c_lite.safetensors fakesize 4123150000"; echo "stage_c_lite_bf16.safetensors fakesize 2061580000"
    echo "stage_b.safetensors fakesize 6251770000"; echo "stage_b_bf16.safetensors fakesize 3125890000"
    echo "stage_b_lite.safetensors fakesize 2797890000"; echo "stage_b_lite_bf16.safetensors fakesize 1398950000"
} >"$tmp/faults"
CASCADE_MEMORY=6G est --dry-run
has auto-est-lite "$tmp/err" "Stage C: lite, Stage B: lite"
CASCADE_MEMORY=20G est --dry-run
has auto-est-full "$tmp/err" "Stage C: full, Stage B: full"
CASCADE_MEMORY=10G est --dry-run --stage-b lite-bf16
has auto-est-mixed "$tmp/err" "Stage C: bf16, Stage B: lite-bf16"
: >"$tmp/faults"

# 11. a hostile hub: header values must not reach a path, the plan or the terminal unchecked
dl --variant lite-bf16 >/dev/null 2>&1   # a complete, verified DEST to start from
rm -f "$dest/stage_a.safetensors"
# dash's echo turns "\n" into a newline: an ETag that smuggles a plan line "../escape 5 none x"
printf '%s\n' "stage_a.safetensors etag %22abc%5Cn..%2Fescape%205%20none%20x%22" "* anypath 1" >"$tmp/faults"
dl --variant lite-bf16
[ ! -e "$tmp/escape" ] && ok hostile-etag-no-escape || bad "hostile-etag: wrote $tmp/escape outside DEST"
has hostile-etag-warn "$tmp/err" "stage_a.safetensors: the server gives no sha256 or git sha1"
same hostile-etag-file stage_a.safetensors
esc=$(printf '\033')
printf '%s\n' "stage_a.safetensors etag %1B%5B2J%1B%5B31mred" >"$tmp/faults"
dl --variant lite-bf16 --dry-run
if grep -q "$esc" "$tmp/err" "$tmp/out"; then bad "hostile-etag-escape: the terminal escape reached the output"; else ok hostile-etag-escape; fi
for h in "%22$(printf '%065d' 0)%22" "sha256:$(sha256sum "$srv/stage_a.safetensors" | cut -d' ' -f1)" \
         "%22$(sha256sum "$srv/stage_a.safetensors" | cut -d' ' -f1)%20x%22"; do
    echo "stage_a.safetensors etag $h" >"$tmp/faults"
    dl --variant lite-bf16 --dry-run
    has "hostile-hash-$h" "$tmp/out" "stage_a.safetensors 100000 bytes none -"
done
for z in 12abc -5 010 0x10 1e9 99999999999999999999 1099511627777 "1%20+%201"; do
    rm -f "$dest/stage_a.safetensors"
    echo "stage_a.safetensors fakesize $z" >"$tmp/faults"
    : >"$tmp/log"
    if dl --variant lite-bf16; then bad "hostile-size-$z: exit 0"; else ok "hostile-size-$z-exit"; fi
    has "hostile-size-$z-msg" "$tmp/err" "stage_a.safetensors: the server announces a bad size"
    if grep -q "^GET" "$tmp/log"; then bad "hostile-size-$z: downloaded anyway"; else ok "hostile-size-$z-no-get"; fi
done
: >"$tmp/faults"
dl --variant lite-bf16

# 12. files already in DEST that the script did not download: never deleted
printf 'my own previewer\n' >"$dest/previewer.safetensors"       # smaller than the hub's
head -c 60000 /dev/urandom >"$dest/effnet_encoder.safetensors"   # larger than the hub's
cp "$dest/effnet_encoder.safetensors" "$tmp/effnet.user"
cp "$srv/stage_a.safetensors" "$tmp/stage_a.copy"
awk '$NF != "stage_a.safetensors"' "$dest/.verified" >"$tmp/v" && cp "$tmp/v" "$dest/.verified"   # not ours
: >"$tmp/log"
if dl --variant lite-bf16; then ok user-exit; else bad "user-exit: $(cat "$tmp/err")"; fi
if [ "$(cat "$dest/previewer.safetensors.orig" 2>/dev/null)" = "my own previewer" ]; then ok user-small-kept; else bad user-small-kept; fi
if cmp -s "$tmp/effnet.user" "$dest/effnet_encoder.safetensors.orig"; then ok user-large-kept; else bad user-large-kept; fi
has user-msg "$tmp/err" "previewer.safetensors was not downloaded by this script and does not match the hub's file: moved aside to $dest/previewer.safetensors.orig (not deleted)"
same user-new-previewer previewer.safetensors
same user-new-effnet effnet_encoder.safetensors
has user-match-kept "$tmp/err" "stage_a.safetensors: already there and matches the hub's file (sha256 verified); kept"
if grep -q "GET .*stage_a" "$tmp/log"; then bad "user-match: fetched again"; else ok user-match-no-get; fi
# a second user file of the same name goes to .orig.1; an old .bad is not overwritten
printf 'mine again\n' >"$dest/previewer.safetensors"
dl --variant lite-bf16
if [ "$(cat "$dest/previewer.safetensors.orig.1" 2>/dev/null)" = "mine again" ] &&
   [ "$(cat "$dest/previewer.safetensors.orig")" = "my own previewer" ]; then ok user-orig-1; else bad user-orig-1; fi
printf 'my bad\n' >"$dest/stage_a.safetensors.bad"
rm -f "$dest/stage_a.safetensors"
echo "stage_a.safetensors badsha" >"$tmp/faults"
dl --variant lite-bf16
if [ "$(cat "$dest/stage_a.safetensors.bad")" = "my bad" ] && [ -f "$dest/stage_a.safetensors.bad.1" ]; then ok user-bad-kept; else bad user-bad-kept; fi
has user-bad-msg "$tmp/err" "kept aside as $dest/stage_a.safetensors.bad.1"
: >"$tmp/faults"
rm -f "$dest"/*.orig "$dest"/*.orig.1 "$dest"/*.bad "$dest"/*.bad.1
dl --variant lite-bf16

# 13. links and special files in DEST: nothing written outside it, nothing replaced, no hang
mkdir "$tmp/outside"
rm -rf "$dest/tokenizer"
ln -s "$tmp/outside" "$dest/tokenizer"
if dl --variant lite-bf16; then bad "link-dir: exit 0"; else ok link-dir-exit; fi
has link-dir-msg "$tmp/err" "$dest/tokenizer leads outside $dest"
[ -z "$(ls "$tmp/outside")" ] && ok link-dir-nothing-outside || bad "link-dir: wrote $(ls "$tmp/outside")"
rm "$dest/tokenizer"
mkdir "$dest/tok-real"
ln -s tok-real "$dest/tokenizer"   # a link that stays inside DEST is fine
if dl --variant lite-bf16; then ok link-inside; else bad "link-inside: $(cat "$tmp/err")"; fi
same link-inside-file tokenizer/vocab.json
printf 'victim\n' >"$tmp/victim"
rm -f "$dest/stage_a.safetensors"
ln -s "$tmp/victim" "$dest/stage_a.safetensors.part"
if dl --variant lite-bf16; then bad "link-part: exit 0"; else ok link-part-exit; fi
has link-part-msg "$tmp/err" "$dest/stage_a.safetensors.part: not a regular file"
[ "$(cat "$tmp/victim")" = victim ] && ok link-part-victim-intact || bad link-part-victim-intact
rm -f "$dest/stage_a.safetensors.part"
mkfifo "$dest/stage_a.safetensors"
if dl --variant lite-bf16; then bad "fifo-file: exit 0"; else ok fifo-file-exit; fi
has fifo-file-msg "$tmp/err" "$dest/stage_a.safetensors: not a regular file"
[ -p "$dest/stage_a.safetensors" ] && ok fifo-file-not-replaced || bad fifo-file-not-replaced
rm -f "$dest/stage_a.safetensors"
mv "$dest/.verified" "$tmp/verified.saved"
mkfifo "$dest/.verified"
dl --variant lite-bf16; rc=$?
[ $rc = 1 ] && ok fifo-verified-exit || bad "fifo-verified: exit $rc (124: hung)"
has fifo-verified-msg "$tmp/err" "$dest/.verified: not a regular file"
rm -f "$dest/.verified"
mv "$tmp/verified.saved" "$dest/.verified"

# 10. usage
sh "$SCRIPT" --variant huge >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "unknown variant 'huge'" "$tmp/err" && ok usage-variant || bad "usage-variant: $rc"
sh "$SCRIPT" --help >"$tmp/out" 2>&1 && grep -q "^usage: download-models" "$tmp/out" && ok usage-help || bad usage-help
exit $fail
