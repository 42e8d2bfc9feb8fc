# qesif: `make run` reproduces the paper's figures on the built-in backend; `make test` runs the tests.
# Both create .venv and install the project on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
QESIF := $(VENV)/bin/qesif
OUT ?= results
STAMP := $(VENV)/.installed-stamp
PYX := $(shell find qesif_core bridge -name '*.pyx' 2>/dev/null)

.PHONY: install build run test test-slow bench lint clean sysdeps cpp-client omnet simulators simulators-sysdeps

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "Cython>=3.0" "setuptools>=68" wheel "numpy>=1.26"
	$(PY) -m pip install -q --no-build-isolation -e '.[dev]'
	$(PY) -m pip install -q "sslpsk3>=2.1" || echo "note: sslpsk3 did not build (needs libssl-dev: make sysdeps); the testbed tests will skip"
	touch $@

install: $(STAMP)

# Rebuild the Cython extensions in place (after editing a .pyx).
build: $(STAMP) $(PYX)
	$(PY) setup.py -q build_ext --inplace

# The paper's Figures 2-7, the regime study (Figure 8, $(OUT)/regimes) and the comparison report into $(OUT)/
# (resumable: finished runs are kept), and the city QKD network beyond the paper (docs/qkd-network.md; its
# QKD blocks shared by two processes).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
run: build
	$(QESIF) run scenarios/paper.yaml --out $(OUT) --jobs $(JOBS)
	$(QESIF) run scenarios/ablation.yaml --out $(OUT) --jobs $(JOBS)
	QESIF_QNET_WORKERS=2 $(QESIF) run scenarios/city_network.yaml --out $(OUT)
	$(QESIF) run scenarios/regimes.yaml --out $(OUT)/regimes --jobs $(JOBS)
	$(QESIF) figures $(OUT) --out $(OUT)/figures --regimes $(OUT)/regimes
	$(QESIF) report $(OUT) --out $(OUT)/report.html --regimes $(OUT)/regimes

# pytest's exit code 5 (no tests collected) counts as success; every other failure fails.
test: build
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

test-slow: build
	$(PY) -m pytest -m slow $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

bench: build
	$(PY) benchmarks/run.py $(BENCH)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# C++ client of the orchestrator's ZeroMQ protocol (no OMNeT++ needed): a static library, a demo that does
# HELLO, KEY_REQUEST and BYE, and a complete external peer (tests/omnet_models/ run both against the
# orchestrator).
CXX ?= g++
CPP_BUILD ?= build/cpp
CPP_CLIENT := omnet_models/client
CPP_FLAGS := -std=c++17 -O2 -Wall -Wextra -I$(CPP_CLIENT)/include $(shell pkg-config --cflags libzmq 2>/dev/null)
CPP_LIBS := $(shell pkg-config --libs libzmq 2>/dev/null || echo -lzmq)

cpp-client: $(CPP_BUILD)/qesif_bridge_demo $(CPP_BUILD)/qesif_external_peer

$(CPP_BUILD)/libqesif_bridge.a: $(CPP_CLIENT)/src/bridge_client.cpp $(CPP_CLIENT)/include/qesif/bridge_client.hpp
	mkdir -p $(CPP_BUILD)
	$(CXX) $(CPP_FLAGS) -c $< -o $(CPP_BUILD)/bridge_client.o
	ar rcs $@ $(CPP_BUILD)/bridge_client.o

$(CPP_BUILD)/qesif_bridge_demo: $(CPP_CLIENT)/examples/bridge_demo.cpp $(CPP_BUILD)/libqesif_bridge.a
	$(CXX) $(CPP_FLAGS) $< $(CPP_BUILD)/libqesif_bridge.a $(CPP_LIBS) -o $@

# A complete external network peer (docs/protocol.md, "External peers"): qesif run --peer '... {endpoint} ...'.
$(CPP_BUILD)/qesif_external_peer: $(CPP_CLIENT)/examples/external_peer.cpp $(CPP_BUILD)/libqesif_bridge.a
	$(CXX) $(CPP_FLAGS) $< $(CPP_BUILD)/libqesif_bridge.a $(CPP_LIBS) -o $@

# The QESIF model for OMNeT++ 6.1 + INET 4.5 (the `omnetpp` backend): needs OMNeT++'s setenv sourced (opp_makemake
# on PATH) and INET_ROOT pointing at a built INET 4.5 tree (docs/simulators.md). Builds omnet_models/qesif/qesif.
INET_ROOT ?=
OMNET_MODEL := omnet_models/qesif
omnet: $(CPP_BUILD)/libqesif_bridge.a
	@command -v opp_makemake >/dev/null 2>&1 || { echo "make omnet: opp_makemake not on PATH: source OMNeT++ 6.1's setenv first (docs/simulators.md)"; exit 2; }
	@test -n "$(INET_ROOT)" && test -f "$(INET_ROOT)/src/inet/features.h" || { echo "make omnet: set INET_ROOT to a built INET 4.5 tree (got '$(INET_ROOT)')"; exit 2; }
	cd $(OMNET_MODEL) && opp_makemake -f -o qesif -O out -KINET_PROJ=$(abspath $(INET_ROOT)) -DINET_IMPORT \
		-I$(abspath $(INET_ROOT))/src -I$(abspath $(CPP_CLIENT))/include \
		-L$(abspath $(INET_ROOT))/src -lINET -L$(abspath $(CPP_BUILD)) -lqesif_bridge -lzmq
	$(MAKE) -C $(OMNET_MODEL) MODE=release
	printf 'INET_SRC=%s\nOMNETPP_LIB=%s\n' "$(abspath $(INET_ROOT))/src" "$$(dirname "$$(opp_configfilepath)")/lib" > $(OMNET_MODEL)/out/paths.env

# OMNeT++ 6.1, INET 4.5.4 and QuISP 0.3.0 built outside the repository (docs/simulators.md):
#   make simulators OMNETPP_SRC=... INET_SRC=... QUISP_SRC=... [SIM_PREFIX=~/qesif-simulators] [SIM_STAGES=...]
# then `source <SIM_PREFIX>/env.sh` and `make omnet INET_ROOT=$$INET_ROOT`. Resumable; exit 2 names what is missing.
SIM_STAGES ?=
simulators:
	tools/build_simulators.sh $(SIM_STAGES)

# Debian packages the simulator build needs (OMNeT++: bison flex perl python3 pkg-config, a snapshot without
# sqlite3.c: libsqlite3-dev; QuISP: Eigen, nlohmann-json, spdlog, fmt); needs root.
simulators-sysdeps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ make tar pkg-config bison flex perl python3 \
		libsqlite3-dev libeigen3-dev nlohmann-json3-dev libspdlog-dev libfmt-dev

# System packages used by the C++ bridge client and the testbed (Debian); needs root.
sysdeps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ make pkg-config libzmq3-dev cppzmq-dev nlohmann-json3-dev mosquitto libssl-dev

clean:
	rm -rf build $(OUT) figures .pytest_cache
	find qesif_core bridge -name '*.so' -delete
