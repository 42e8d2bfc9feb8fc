#!/usr/bin/env bash
# Builds OMNeT++ 6.1, INET 4.5.4 and QuISP 0.3.0 outside the repository, for qesif's `omnetpp` and `quisp`
# backends, with the settings of docs/simulators.md, and writes one env file to source.
#
#   OMNETPP_SRC=... INET_SRC=... QUISP_SRC=... tools/build_simulators.sh [omnetpp] [inet] [quisp]
#
# Each *_SRC is a source folder (a git clone or work tree) or a release archive (.tgz, .tar.gz, .tar.xz).
# The sources are copied into $SIM_PREFIX (default ~/qesif-simulators) and built there; the source folders
# are left untouched. Without stage names all three are built, in order.
# Resumable: every finished step leaves a stamp in $SIM_PREFIX/.stamps; a rerun skips stamped steps and
# continues where a failure stopped (delete a stage's stamps, e.g. .stamps/inet.*, to redo it).
# Each step's output goes to $SIM_PREFIX/logs/<stage>-<step>.log; a failed step prints the log's end.
# A missing prerequisite stops the script before any build with exit code 2, naming it and its Debian package.
set -euo pipefail

PROG=build_simulators
SIM_PREFIX=${SIM_PREFIX:-$HOME/qesif-simulators}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
STAMPS=$SIM_PREFIX/.stamps
LOGS=$SIM_PREFIX/logs
ENV_FILE=$SIM_PREFIX/env.sh
OMNETPP_DIR=$SIM_PREFIX/omnetpp
INET_DIR=$SIM_PREFIX/inet
QUISP_DIR=$SIM_PREFIX/quisp

# INET features the QESIF model does not need (routing protocols, SCTP, RTP, VoIP, TSN, tutorials): disabling
# them roughly halves INET's build. `-f` disables features that depend on them too, without asking.
INET_DISABLED_FEATURES="Aodv Bgpv4 Dsdv Dymo Eigrp Gpsr Ospfv2 Ospfv3 Pim Rip Mpls WiseRoute Sctp Rtp SimpleVoip
VoipStream TSN ConfiguratorTutorial ProtocolTutorial QueueingTutorial WirelessTutorial"

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

say() { printf '%s: %s\n' "$PROG" "$*"; }

# --- prerequisites: collected, then reported together -------------------------------------------------------
MISSING=()
missing() { MISSING+=("$1"); }

need_cmd() { # command, Debian package
    command -v "$1" >/dev/null 2>&1 || missing "command '$1' (Debian package: $2)"
}

need_header() { # header path under an include folder, Debian package
    local dir
    for dir in /usr/include /usr/local/include; do
        [ -e "$dir/$1" ] && return 0
    done
    missing "header '$1' (Debian package: $2)"
}

need_source() { # variable name, file that must exist in a source folder, what it should be
    local name=$1 marker=$2 what=$3 value=${!1:-}
    if [ -z "$value" ]; then
        missing "$name is not set: point it at $what (a source folder or release archive)"
    elif [ -d "$value" ]; then
        [ -e "$value/$marker" ] || missing "$name=$value does not look like $what: no $marker in it"
    elif [ ! -f "$value" ]; then
        missing "$name=$value: no such folder or archive"
    fi
}

report_missing() {
    [ ${#MISSING[@]} -eq 0 ] && return 0
    say "missing prerequisites:" >&2
    printf '  - %s\n' "${MISSING[@]}" >&2
    say "install the Debian packages named above (apt-get install ...) and/or set the variables, then rerun" >&2
    exit 2
}

check_prerequisites() { # stages...
    need_cmd make make
    need_cmd g++ g++
    need_cmd tar tar
    local stage
    for stage in "$@"; do
        case $stage in
        omnetpp)
            need_cmd pkg-config pkg-config
            need_cmd bison bison
            need_cmd flex flex
            need_cmd perl perl
            need_cmd python3 python3
            need_source OMNETPP_SRC configure.user.dist "OMNeT++ 6.1's sources (tag omnetpp-6.1.0)"
            # a source folder without the 9 MiB sqlite3.c amalgamation links Debian's libsqlite3 instead
            if [ -d "${OMNETPP_SRC:-}" ] && [ ! -s "$OMNETPP_SRC/src/common/sqlite3.c" ]; then
                need_header sqlite3.h libsqlite3-dev
            fi
            ;;
        inet)
            need_cmd python3 python3
            need_source INET_SRC .oppfeatures "INET 4.5.4's sources (tag v4.5.4)"
            [ -f "$STAMPS/omnetpp.aloha" ] || [[ " $* " == *" omnetpp "* ]] ||
                missing "OMNeT++ built by this script in $OMNETPP_DIR (run the omnetpp stage first)"
            ;;
        quisp)
            need_source QUISP_SRC quisp/makefrag "QuISP 0.3.0's sources (github.com/ngym/quisp)"
            need_header eigen3/Eigen/Dense libeigen3-dev
            need_header nlohmann/json.hpp nlohmann-json3-dev
            need_header spdlog/spdlog.h libspdlog-dev
            need_header fmt/ostream.h libfmt-dev
            [ -f "$STAMPS/omnetpp.aloha" ] || [[ " $* " == *" omnetpp "* ]] ||
                missing "OMNeT++ built by this script in $OMNETPP_DIR (run the omnetpp stage first)"
            ;;
        *)
            say "unknown stage '$stage' (expected omnetpp, inet or quisp)" >&2
            exit 2
            ;;
        esac
    done
    report_missing
}

# --- steps -----------------------------------------------------------------------------------------------------
# step STAGE NAME FUNCTION: runs FUNCTION once (stamp), output in the step's log, its time on the console.
step() {
    local stage=$1 name=$2 fn=$3 stamp=$STAMPS/$1.$2 log=$LOGS/$1-$2.log start
    if [ -f "$stamp" ]; then
        say "$stage: $name already done (stamp $stamp)"
        return 0
    fi
    say "$stage: $name ... (log: $log)"
    start=$(date +%s)
    set +e # errexit must stay on inside the step: run it as a plain command, not as a tested condition
    (
        set -e
        "$fn"
    ) >"$log" 2>&1
    local rc=$?
    set -e
    if [ $rc -ne 0 ]; then
        tail -n 30 "$log" >&2 || true
        say "$stage: $name FAILED after $(($(date +%s) - start)) s; the log is $log; rerun to resume" >&2
        exit 1
    fi
    printf '%s %s %s s\n' "$stage" "$name" "$(($(date +%s) - start))" >>"$LOGS/times.txt"
    say "$stage: $name done in $(($(date +%s) - start)) s"
    touch "$stamp"
}

# unpack SOURCE DEST: a fresh copy of a source folder (without .git) or of a tar archive's single top folder
unpack() {
    local src=$1 dest=$2
    rm -rf "$dest"
    mkdir -p "$dest"
    if [ -d "$src" ]; then
        (cd "$src" && tar -cf - --exclude=./.git .) | tar -xf - -C "$dest"
    else
        tar -xf "$src" -C "$dest" --strip-components=1
    fi
}

source_omnetpp() {
    set +u # OMNeT++'s setenv reads unset variables
    # shellcheck disable=SC1091
    source "$OMNETPP_DIR/setenv" -q
    set -u
}

omnetpp_unpack() {
    unpack "$OMNETPP_SRC" "$OMNETPP_DIR"
    # a release archive ships the IDE, and configure then insists on the IDE's Python modules (numpy, scipy,
    # pandas, matplotlib): this build is command-line only, so the copy's IDE is set aside
    if [ -d "$OMNETPP_DIR/ide" ]; then mv "$OMNETPP_DIR/ide" "$OMNETPP_DIR/ide.unused"; fi
}

omnetpp_configure() {
    cd "$OMNETPP_DIR"
    # command-line only: no Qtenv, no 3D views, no Python bindings (qesif reads results itself)
    cp configure.user.dist configure.user
    local setting
    for setting in WITH_QTENV=no WITH_OSG=no WITH_OSGEARTH=no WITH_SCAVE_PYTHON_BINDINGS=no; do
        sed -i -E "s/^${setting%%=*}=.*/$setting/" configure.user
        grep -qx "$setting" configure.user || { echo "configure.user has no ${setting%%=*} line"; return 1; }
    done
    if [ ! -s src/common/sqlite3.c ]; then
        # the amalgamation is absent (source snapshots without files of 4 MiB and more): link Debian's
        sed -i -e 's| \$O/sqlite3\.o||' -e 's|^IMPLIBS= \$(LIBXML_LIBS)$|IMPLIBS= $(LIBXML_LIBS) -lsqlite3|' \
            src/common/Makefile
        ! grep -q 'sqlite3\.o \\' src/common/Makefile && grep -q -- '-lsqlite3' src/common/Makefile ||
            { echo "could not switch src/common/Makefile to -lsqlite3 (unexpected layout)"; return 1; }
    fi
    source_omnetpp # setenv refuses to run before configure.user exists; configure refuses to run without it
    ./configure
}

omnetpp_build() {
    cd "$OMNETPP_DIR"
    source_omnetpp
    make -j"$JOBS" MODE=release base
}

omnetpp_aloha() { # the sample tests/bridge/backends/test_omnetpp.py runs
    cd "$OMNETPP_DIR/samples/aloha"
    source_omnetpp
    opp_makemake -f --deep
    make -j"$JOBS" MODE=release
    test -x aloha
}

inet_unpack() { unpack "$INET_SRC" "$INET_DIR"; }

source_inet() {
    source_omnetpp
    set +u
    # shellcheck disable=SC1091
    source "$INET_DIR/setenv" -q
    set -u
}

inet_features() {
    cd "$INET_DIR"
    source_inet
    # shellcheck disable=SC2086
    opp_featuretool disable -f $INET_DISABLED_FEATURES
    make makefiles
}

inet_build() {
    cd "$INET_DIR"
    source_inet
    make -j"$JOBS" MODE=release
    test -f src/libINET.so
}

quisp_unpack() { unpack "$QUISP_SRC" "$QUISP_DIR"; }

quisp_patch() {
    cd "$QUISP_DIR"
    # the submodules (eigen, json, spdlog) come from Debian packages: empty CMakeLists.txt files keep the
    # makefile's `eigen`/`json`/`spdlog` targets from running `git submodule update`
    mkdir -p eigen json spdlog
    touch eigen/CMakeLists.txt json/CMakeLists.txt spdlog/CMakeLists.txt
    # g++ rejects `struct ::std::hash<...>` inside `namespace std` (QuISP's CI builds with clang)
    sed -i 's/struct ::std::hash</struct hash</' quisp/runtime/types.h
    ! grep -q 'struct ::std::hash<' quisp/runtime/types.h
}

quisp_makefile() {
    cd "$QUISP_DIR/quisp"
    source_omnetpp
    # Debian's Eigen include folder; fmt 9 formats omnetpp::SimTime through operator<< only with
    # FMT_DEPRECATED_OSTREAM; test_utils/ holds unit-test helpers that do not compile against OMNeT++ 6.1
    opp_makemake -f --deep -O out -i ./makefrag -I/usr/include/eigen3 -DFMT_DEPRECATED_OSTREAM=1 -lfmt \
        -Xtest_utils
}

quisp_build() {
    cd "$QUISP_DIR/quisp"
    source_omnetpp
    # PROJ_ROOT given here, so makefrag does not ask `git rev-parse --show-toplevel` (the copy has no .git)
    make -j"$JOBS" MODE=release PROJ_ROOT="$QUISP_DIR"
    test -x quisp
}

write_env() {
    local tmp=$ENV_FILE.tmp
    {
        echo "# written by qesif's tools/build_simulators.sh: source it (bash) before make omnet / pytest -m omnetpp"
        echo "source $OMNETPP_DIR/setenv -q"
        echo "export OMNETPP_ROOT=$OMNETPP_DIR"
        if [ -f "$STAMPS/inet.build" ]; then
            echo "source $INET_DIR/setenv -q"
            echo "export INET_ROOT=$INET_DIR"
        fi
        if [ -f "$STAMPS/quisp.build" ]; then
            echo "export QUISP=$QUISP_DIR/quisp/quisp"
        fi
    } >"$tmp"
    mv "$tmp" "$ENV_FILE"
    say "environment: source $ENV_FILE"
}

main() {
    local stages=() arg
    for arg in "$@"; do
        case $arg in
        -h | --help) usage 0 ;;
        omnetpp | inet | quisp) stages+=("$arg") ;;
        *)
            say "unknown argument '$arg' (stages: omnetpp inet quisp)" >&2
            exit 2
            ;;
        esac
    done
    [ ${#stages[@]} -gt 0 ] || stages=(omnetpp inet quisp)
    check_prerequisites "${stages[@]}"
    mkdir -p "$STAMPS" "$LOGS"
    say "building ${stages[*]} in $SIM_PREFIX with $JOBS jobs"
    for arg in omnetpp inet quisp; do # always in dependency order
        [[ " ${stages[*]} " == *" $arg "* ]] || continue
        case $arg in
        omnetpp)
            step omnetpp unpack omnetpp_unpack
            step omnetpp configure omnetpp_configure
            step omnetpp build omnetpp_build
            step omnetpp aloha omnetpp_aloha
            ;;
        inet)
            step inet unpack inet_unpack
            step inet features inet_features
            step inet build inet_build
            ;;
        quisp)
            step quisp unpack quisp_unpack
            step quisp patch quisp_patch
            step quisp makefile quisp_makefile
            step quisp build quisp_build
            ;;
        esac
        write_env
    done
}

main "$@"
