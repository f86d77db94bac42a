#!/usr/bin/env bash
# `make test-pi`: the runtime on emulated arm64 with Raspberry Pi 3 / 4 / 5 CPUs, compared with x86-64.
#
#   bash pi/check.sh [run]   build (or reuse) the arm64 roots in .pi/, install the checkout in them with
#                            `pip install .` (no TensorFlow), run the runtime's tests and `digitkit classify` /
#                            `digitkit camera` under each CPU profile, compare with the same runs on this host
#   bash pi/check.sh probe   say whether this machine can run the check, and if not why (exit 0 / 1)
#
# Settings (environment): PI_DISTROS ("bookworm"; add "trixie" for Python 3.13), PI_PROFILES ("pi3 pi4 pi5"),
# PI_TESTS (all: pytest under every profile, first: under the first profile only, none), PI_TEST_PATHS (which
# test files; default: tests/runtime and tests/test_runtime_isolation.py), PI_MIRROR (the Debian
# mirror; default: the one apt uses here), PI_DIR (.pi). Needs root, an x86-64 host, binfmt_misc, and network
# to the Debian mirror and PyPI. Every mount is made inside a private mount namespace (unshare), so none
# outlives the run even if it is killed; binfmt_misc itself is unmounted again if a run mounted it (by the last
# run to end, when several run at once).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PI_DIR=${PI_DIR:-$REPO/.pi}
PI_DISTROS=${PI_DISTROS:-bookworm}
PI_PROFILES=${PI_PROFILES:-pi3 pi4 pi5}
PI_TESTS=${PI_TESTS:-all}
PI_TEST_PATHS=${PI_TEST_PATHS:-tests/runtime tests/test_runtime_isolation.py}  # the runtime's own tests
HOST_PY=${HOST_PY:-$REPO/.venv/bin/python}  # the project's own venv (TensorFlow), for the inputs only
BINFMT=/proc/sys/fs/binfmt_misc
VENV_IN_ROOT=/root/digitkit-venv  # where a Pi user's `python3 -m venv` would put it
SRC_IN_ROOT=/root/digitkit        # the checkout, copied in (pip builds in the source tree)
# The emulated CPU for building the root and installing into it. Not qemu's default `max`: Debian trixie builds
# arm64 code with branch protection (pointer authentication instructions in every function), and `max` emulates
# them with the QARMA5 cipher in software: trixie's python3 ran 17 x slower under `max` than under cortex-a72
# (qemu 7.2), which is why a trixie root once took 45 min to debootstrap and its pip install never finished.
# The Pi cores (A53/A72/A76, all before Armv8.3) have no pointer authentication: there those are no-ops.
INSTALL_CPU=cortex-a72
log() { printf 'test-pi: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# The apt mirror this host already uses (deb822 or one-line sources); deb.debian.org otherwise.
default_mirror() {
    local uri
    uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
          /etc/apt/sources.list 2>/dev/null | grep -oE 'https?://[^ ]*/debian/?( |$)' | head -1 | tr -d ' ')
    echo "${uri:-http://deb.debian.org/debian}"
}
PI_MIRROR=${PI_MIRROR:-$(default_mirror)}

# --- can this machine run it? ------------------------------------------------------------------------------
# Unmounting binfmt_misc drops every registration (Linux 6.7 and later), which would break a test-pi run still
# going (two checkouts, or CI and a developer, on one machine). So every run holds a shared lock on LOCK; the run
# that mounted it leaves a MARK, and whichever run ends last (gets the lock exclusively) unmounts it. MOUNT_LOCK
# makes "is it mounted? mount it" and "am I last? unmount it" one step each.
LOCK=/run/digitkit-test-pi.lock
MOUNT_LOCK=/run/digitkit-test-pi.mount.lock
MARK=/run/digitkit-test-pi.mounted-binfmt
TESTS_FAILED=()
probe() {
    [ "$(uname -m)" = x86_64 ] || { echo "the host is $(uname -m), not x86-64: this check emulates arm64 on x86-64"; return 1; }
    [ "$(id -u)" = 0 ] || { echo "not root (debootstrap, chroot and mounts need root)"; return 1; }
    command -v unshare >/dev/null || { echo "unshare (util-linux) is missing"; return 1; }
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null || { echo "missing ${missing[*]} and no apt-get to install them"; return 1; }
        log "installing ${missing[*]} with apt-get"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } \
            >"$PI_DIR/apt.log" 2>&1 || { echo "apt-get install ${missing[*]} failed (see $PI_DIR/apt.log)"; return 1; }
    fi
    exec 9>>"$LOCK"
    flock -s 9  # held for the whole run
    exec 8>>"$MOUNT_LOCK"
    flock -x 8
    if ! mountpoint -q "$BINFMT"; then
        mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null \
            || { flock -u 8; echo "binfmt_misc cannot be mounted at $BINFMT (a container without that privilege?)"; return 1; }
        touch "$MARK"
    fi
    flock -u 8
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true  # already enabled is fine; checked below
    [ "$(head -1 "$BINFMT/qemu-aarch64" 2>/dev/null)" = enabled ] \
        || { echo "qemu-aarch64 is not registered with binfmt_misc (update-binfmts --enable qemu-aarch64 failed)"; return 1; }
    # F: the kernel opens the emulator at registration, so it works inside a chroot that does not contain it.
    grep -q '^flags: .*F' "$BINFMT/qemu-aarch64" \
        || { echo "qemu-aarch64 is registered without the F flag: it would not run inside the chroot"; return 1; }
    python3 - "$PI_MIRROR" <<'EOF' || return 1
import sys, urllib.request
for url in (sys.argv[1].rstrip("/") + "/dists/bookworm/Release", "https://pypi.org/simple/ai-edge-litert/"):
    try:
        urllib.request.urlopen(url, timeout=20).close()
    except Exception as exc:  # noqa: BLE001 -- any failure means: no network to it
        print(f"no network to {url} ({exc})")
        sys.exit(1)
EOF
}

cleanup() {
    # Mounts live in private namespaces and die with them; binfmt_misc is the one host mount a run may have made:
    # the last run out unmounts it if a run mounted it.
    { true >&9; } 2>/dev/null || return 0  # the probe never got as far as the lock
    exec 8>>"$MOUNT_LOCK"
    flock -x 8
    if [ -e "$MARK" ] && flock -n -x 9; then  # exclusive: no other run holds it shared
        umount "$BINFMT" || log "could not unmount $BINFMT"
        rm -f "$MARK"
    fi
}

# --- the arm64 root ----------------------------------------------------------------------------------------
# Bind-mounts what a run needs into $root and runs "$@" chrooted, all in a private mount namespace.
# Args: root, cpuinfo file ("" = none), QEMU CPU, out dir ("" = none), command...
in_root() {
    local root=$1 cpuinfo=$2 cpu=$3 out=$4
    shift 4
    nice -n 10 unshare --mount --propagation private -- bash -euo pipefail -c '
        root=$1 cpuinfo=$2 cpu=$3 out=$4 inputs=$5; shift 5
        mounted=()
        undo() { for ((i=${#mounted[@]}-1; i>=0; i--)); do umount "${mounted[i]}" || true; done; }
        trap undo EXIT
        m() { mount "$@"; mounted+=("${@: -1}"); }
        m -t proc proc "$root/proc"
        # With /sys, LiteRT detects the CPU and turns XNNPACK on (as on a Pi); without the Pi-style cpuinfo
        # over it, qemu would pass the host x86 /proc/cpuinfo through and the interpreter crashes.
        m -t sysfs sysfs "$root/sys"
        [ -z "$cpuinfo" ] || m --bind "$cpuinfo" "$root/proc/cpuinfo"
        m --bind /dev "$root/dev"
        m -t tmpfs tmpfs "$root/dev/shm"
        m -t tmpfs tmpfs "$root/tmp"
        mkdir -p "$root/in" "$root/out"
        [ ! -d "$inputs" ] || { m --bind "$inputs" "$root/in"; mount -o remount,bind,ro "$root/in"; }
        [ -z "$out" ] || m --bind "$out" "$root/out"
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
            QEMU_CPU="$cpu" PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
            PIP_DEFAULT_TIMEOUT=180 chroot "$root" "$@"
    ' in_root "$root" "$cpuinfo" "$cpu" "$out" "$PI_DIR/inputs" "$@"
}

build_root() {
    local distro=$1 root=$PI_DIR/$1
    if [ ! -f "$root/.digitkit-root" ]; then
        rm -rf "$root" "$root.tmp"
        log "$distro: debootstrap arm64 from $PI_MIRROR (a few minutes; reused next time)"
        local t0=$SECONDS
        # In a private namespace too: debootstrap's own /proc and /sys mounts cannot leak either.
        QEMU_CPU=$INSTALL_CPU nice -n 10 unshare --mount --propagation private -- debootstrap --arch=arm64 --variant=minbase \
            --include=python3,python3-venv,python3-pip,ca-certificates "$distro" "$root.tmp" "$PI_MIRROR" \
            >"$PI_DIR/debootstrap-$distro.log" 2>&1 \
            || die "debootstrap $distro failed: see $PI_DIR/debootstrap-$distro.log"
        mv "$root.tmp" "$root"
        echo "debootstrap $distro: $((SECONDS - t0)) s" >"$root/.digitkit-root"
    fi
    # Debian makes /root 0700; the runtime's tests run the venv's python as nobody (to meet a folder nobody may
    # enter), which must reach the venv and the checkout there, as it reaches a checkout on the host.
    chmod 755 "$root/root"
    # The host's resolver and CA bundle (PyPI may be reached through a proxy the host trusts).
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$root/etc/ssl/certs/host-ca.crt"
}

# The checkout as it is now (tracked and untracked files, not ignored ones) copied to $1: pip builds in the
# source tree, and the checkout must stay as it is.
copy_checkout() {
    local dest=$1
    rm -rf "${dest:?}"
    mkdir -p "$dest"
    if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
        (cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r ls -d 2>/dev/null \
            | tar -c -T - | tar -x -C "$dest")
    else
        tar -c -C "$REPO" --exclude=.git --exclude=.venv --exclude=.pi --exclude=runs . | tar -x -C "$dest"
    fi
}

# Installed as a Pi user would: a venv from Debian's python3, `pip install .` from PyPI.
install_runtime() {
    local distro=$1 root=$PI_DIR/$1
    copy_checkout "$root$SRC_IN_ROOT"
    # Unchanged checkout, installed already: skip pip (a reinstall under emulation takes minutes).
    local stamp
    stamp=$(cd "$root$SRC_IN_ROOT" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
    if [ "$(cat "$root$VENV_IN_ROOT/.installed" 2>/dev/null)" = "$stamp" ]; then
        log "$distro: this checkout is installed already (reused)"
        return
    fi
    log "$distro: pip install . (arm64 wheels from PyPI; the test tools pytest and hypothesis beside it)"
    local t0=$SECONDS
    in_root "$root" "" "$INSTALL_CPU" "" bash -euo pipefail -c "
        [ -x $VENV_IN_ROOT/bin/python ] || python3 -m venv $VENV_IN_ROOT
        cd $SRC_IN_ROOT
        t0=\$(date +%s)
        $VENV_IN_ROOT/bin/pip install --quiet --no-compile .  # byte-compiling everything emulated is slow
        echo \"pip install . took \$((\$(date +%s) - t0)) s\"
        $VENV_IN_ROOT/bin/python -c 'import tomllib; [print(r) for r in tomllib.load(open(\"pyproject.toml\", \"rb\"))[\"project\"][\"optional-dependencies\"][\"dev\"] if not r.startswith(\"ruff\")]' >/tmp/dev.txt
        $VENV_IN_ROOT/bin/pip install --quiet --no-compile -r /tmp/dev.txt
        rm -rf build *.egg-info
        ! $VENV_IN_ROOT/bin/python -c 'import tensorflow' 2>/dev/null || { echo 'TensorFlow is installed in the root' >&2; exit 1; }
        $VENV_IN_ROOT/bin/pip freeze --exclude digitkit >$VENV_IN_ROOT/freeze.txt
    " >"$PI_DIR/install-$distro.log" 2>&1 || die "pip install in the $distro root failed: see $PI_DIR/install-$distro.log"
    echo "$stamp" >"$root$VENV_IN_ROOT/.installed"
    log "$distro: installed in $((SECONDS - t0)) s"
}

# The same runtime on this host: a clean venv, pinned to the versions the first root resolved, so the
# comparison differs by the CPU and nothing else. A root with a newer Python than this host's may have resolved
# versions this host cannot install (trixie's Python 3.13 gets numpy 2.5, which needs 3.12): then only the
# libraries that compute the results are pinned (LiteRT, OpenCV, Pillow), and the versions on each side are in
# the summary (platform lines).
COMPUTING_LIBS='^(ai-edge-litert|opencv-python-headless|pillow)=='
install_x86() {
    local freeze=$1 venv=$PI_DIR/x86-venv
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    copy_checkout "$PI_DIR/x86-src"
    if ! (cd "$PI_DIR/x86-src" && nice -n 10 "$venv/bin/pip" install --quiet -c "$freeze" .) >"$PI_DIR/install-x86.log" 2>&1
    then
        log "x86-64: the root's versions do not all install on this host's Python; pinning LiteRT, OpenCV, Pillow only"
        grep -iE "$COMPUTING_LIBS" "$freeze" >"$PI_DIR/x86-pins.txt" || true
        (cd "$PI_DIR/x86-src" && nice -n 10 "$venv/bin/pip" install --quiet -c "$PI_DIR/x86-pins.txt" .) \
            >>"$PI_DIR/install-x86.log" 2>&1 || die "pip install in $venv failed: see $PI_DIR/install-x86.log"
    fi
    rm -rf "$PI_DIR/x86-src"
}

# --- one CPU profile ---------------------------------------------------------------------------------------
# name: QEMU cpu, MIDR part, variant, revision, BogoMIPS, hwcaps, board revision, model (a Pi's /proc/cpuinfo).
profile() {
    case $1 in
        pi3) echo "cortex-a53|0xd03|0x0|4|38.40|fp asimd evtstrm crc32 cpuid|a02082|Raspberry Pi 3 Model B Rev 1.2" ;;
        pi4) echo "cortex-a72|0xd08|0x0|3|108.00|fp asimd evtstrm crc32 cpuid|c03112|Raspberry Pi 4 Model B Rev 1.2" ;;
        pi5) echo "cortex-a76|0xd0b|0x4|1|108.00|fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp|c04170|Raspberry Pi 5 Model B Rev 1.0" ;;
        *) die "unknown profile $1 (pi3, pi4, pi5)" ;;
    esac
}

# A Pi-style /proc/cpuinfo with as many cores as /sys shows here (a Pi has 4; LiteRT reads both files).
write_cpuinfo() {
    local out=$1 part variant rev bogo feats board model n i
    IFS='|' read -r _ part variant rev bogo feats board model <<<"$(profile "$2")"
    n=$(( $(cut -d- -f2 /sys/devices/system/cpu/possible) + 1 ))
    : >"$out"
    for ((i = 0; i < n; i++)); do
        printf 'processor\t: %d\nBogoMIPS\t: %s\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
            "$i" "$bogo" "$feats" "$variant" "$part" "$rev" >>"$out"
    done
    printf 'Hardware\t: BCM2835\nRevision\t: %s\nSerial\t\t: 10000000d1617014\nModel\t\t: %s\n' "$board" "$model" >>"$out"
}

# classify and camera, --json, with every shipped model; run from the inputs folder so paths match across hosts.
# Args: python bin dir, inputs dir, out dir.
RUNS='
set -euo pipefail
bin=$1 in=$2 out=$3
models=$("$bin/python" -c "import digitkit.runtime, pathlib; print(pathlib.Path(digitkit.runtime.__file__).parent / \"models\")")
DIGITKIT_CACHE_DIR=$(mktemp -d)  # a fresh cache: the model probe runs as on a new install
export DIGITKIT_CACHE_DIR
# digitkit filters library log lines from stderr; the comparison needs the LiteRT line that names XNNPACK.
export DIGITKIT_LIBRARY_LOGS=1
trap "rm -rf $DIGITKIT_CACHE_DIR" EXIT
"$bin/python" -c "import platform, importlib.metadata as m, numpy, cv2; print(platform.machine(), platform.python_version(), \"numpy\", numpy.__version__, \"cv2\", cv2.__version__, \"ai-edge-litert\", m.version(\"ai-edge-litert\"), \"pillow\", m.version(\"pillow\"))" >"$out/platform.txt"
cd "$in"
# The shipped digit models (the sequence model beside them is no --model: both use it inside classify and camera).
for f in $("$bin/python" -c "from digitkit.runtime.reading import SHIPPED_MODELS; print(*SHIPPED_MODELS.values())"); do
    m="$models/$f"
    s=$(basename "$m" .tflite)
    "$bin/digitkit" classify images --model "$m" --json --min-confidence 0 >"$out/$s.classify.jsonl" 2>"$out/$s.classify.err" \
        || { echo "classify with $s failed: $(tail -1 "$out/$s.classify.err")" >&2; exit 1; }
    for v in camera:digits camera-mjpg:digits_mjpg; do
        "$bin/digitkit" camera --source "video/${v#*:}.avi" --model "$m" --json >"$out/$s.${v%:*}.jsonl" \
            2>"$out/$s.${v%:*}.err" || { echo "camera with $s failed: $(tail -1 "$out/$s.${v%:*}.err")" >&2; exit 1; }
    done
done
'

run_profile() {
    local distro=$1 prof=$2 tests=$3 root=$PI_DIR/$1 out=$PI_DIR/results/$1/$2 cpu
    cpu=$(profile "$prof" | cut -d'|' -f1)
    rm -rf "$out"
    mkdir -p "$out"
    write_cpuinfo "$PI_DIR/cpuinfo-$prof" "$prof"
    local t0=$SECONDS
    if [ "$tests" = 1 ]; then
        log "$distro/$prof ($cpu): the runtime's tests (those that need TensorFlow skip)"
        in_root "$root" "$PI_DIR/cpuinfo-$prof" "$cpu" "$out" bash -c "
            cd $SRC_IN_ROOT && DIGITKIT_TEST_TINY_INT8=/in/tiny_int8.tflite DIGITKIT_CACHE_DIR=/tmp/dk-cache \
            DIGITKIT_PROBE_TIMEOUT=600 HYPOTHESIS_PROFILE=emulated \
            $VENV_IN_ROOT/bin/python -m pytest $PI_TEST_PATHS \
                -m 'not slow and not timing' -q \
                -p no:cacheprovider --junitxml=/out/pytest.xml" >"$out/pytest.log" 2>&1 \
            || { grep -E '^(FAILED|ERROR) ' "$out/pytest.log" >&2 || tail -30 "$out/pytest.log" >&2
                 TESTS_FAILED+=("$distro/$prof: tests failed (see $out/pytest.log)"); }
        log "$distro/$prof: $(tail -1 "$out/pytest.log")"
    fi
    log "$distro/$prof ($cpu): digitkit classify / camera --json with every shipped model"
    in_root "$root" "$PI_DIR/cpuinfo-$prof" "$cpu" "$out" bash -c "$RUNS" runs "$VENV_IN_ROOT/bin" /in /out \
        || die "$distro/$prof: the runs failed (their stderr is in $out)"
    echo "$((SECONDS - t0))" >"$out/seconds"
}

main() {
    trap cleanup EXIT
    local why
    why=$(mktemp)
    [ "$(id -u)" != 0 ] || mkdir -p "$PI_DIR"
    if ! probe >"$why"; then  # not in $(...): the probe's lock must stay with this shell
        [ "${1:-run}" = probe ] && { echo "test-pi cannot run here: $(cat "$why")"; rm -f "$why"; exit 1; }
        die "test-pi cannot run here: $(cat "$why"; rm -f "$why")"
    fi
    rm -f "$why"
    [ "${1:-run}" = probe ] && { echo "test-pi can run here"; exit 0; }
    [ -x "$HOST_PY" ] || die "$HOST_PY is missing: run 'make venv' first (it builds the inputs and the tests' model)"
    local start=$SECONDS first=1 distro prof
    log "inputs: images, video, the tests' tiny model (built with TensorFlow on this host)"
    TF_CPP_MIN_LOG_LEVEL=3 nice -n 10 "$HOST_PY" "$REPO/pi/make_inputs.py" --out "$PI_DIR/inputs" \
        --data-dir "${DIGITKIT_DATA:-$REPO/../shared/data/mnist}" \
        >"$PI_DIR/inputs.log" 2>&1 || die "making the inputs failed: see $PI_DIR/inputs.log"
    rm -rf "$PI_DIR/results"
    for distro in $PI_DISTROS; do
        build_root "$distro"
        install_runtime "$distro"
        if [ "$first" = 1 ]; then
            log "x86-64: the same runs on this host (venv pinned to the $distro root's versions)"
            install_x86 "$PI_DIR/$distro$VENV_IN_ROOT/freeze.txt"
            mkdir -p "$PI_DIR/results/x86"
            nice -n 10 bash -c "$RUNS" runs "$PI_DIR/x86-venv/bin" "$PI_DIR/inputs" "$PI_DIR/results/x86" \
                || die "x86-64: the runs failed (their stderr is in $PI_DIR/results/x86)"
        fi
        local n=0
        for prof in $PI_PROFILES; do
            local tests=0
            { [ "$PI_TESTS" = all ] || { [ "$PI_TESTS" = first ] && [ $n = 0 ]; }; } && tests=1
            run_profile "$distro" "$prof" "$tests"
            n=$((n + 1))
        done
        first=0
    done
    local rc=0
    python3 "$REPO/pi/compare.py" "$PI_DIR/results" --summary "$PI_DIR/results/summary.md" || rc=1
    log "done in $((SECONDS - start)) s"
    # A failed test does not stop the runs and the comparison (one report shows everything), but fails the check.
    [ ${#TESTS_FAILED[@]} = 0 ] || die "${TESTS_FAILED[*]}"
    [ "$rc" = 0 ] || die "the arm64 runs differ from x86-64 (see $PI_DIR/results/summary.md)"
}

[ "${BASH_SOURCE[0]}" != "$0" ] || main "$@"  # sourced: the functions only (for debugging)
