# Front end of the build (kvm-kmod style). See README.md.
#   make            build kvm.ko, kvm-amd.ko, kvm-intel.ko
#   make install    install them (DESTDIR-aware) + the udev rule, then depmod
#   make check      all tests (host + test VM), as .ci/run
#   make run        the main job: a guest on our modules in the test VM
#   make bench      benchmarks against upstream's modules
#   make check-debug  the VM suite on the debug kernel (KASAN, kmemleak, lockdep...)
#   make fuzz DURATION=S  ioctl and hostile-guest fuzzers, ours and upstream, and
#                   the differential errno check against upstream
#   make selftests  Linux 6.12's KVM selftests (x86) on upstream's modules and ours
#                   in the test VM (SELFTESTS="a b" for a subset)
#   make clean
-include config.mak

KBUILD = $(MAKE) -C $(KERNELDIR) M=$(CURDIR) RUSTC=$(RUSTC) \
	RUST_LIB_SRC=$(RUST_LIB_SRC) BINDGEN=$(BINDGEN)

all: config.mak
	$(KBUILD) modules

config.mak:
	./configure

install: all
	$(KBUILD) INSTALL_MOD_PATH=$(DESTDIR) INSTALL_MOD_DIR=extra/kvm-rs modules_install
	install -D -m 0644 scripts/65-kvm.rules $(DESTDIR)/lib/udev/rules.d/65-kvm.rules
	-depmod -b $(if $(DESTDIR),$(DESTDIR),/) $(KERNELRELEASE_TARGET)

check: all
	./scripts/run-tests.sh

run: all
	./scripts/main-job.sh

bench: all
	./scripts/bench.sh

check-debug: all
	./scripts/debug-suite.sh

DURATION ?= 60
fuzz: all
	./scripts/fuzz.sh $(DURATION)

# 1000 load/unload cycles of kvm + kvm-amd on ours and upstream's, plus the rest of
# tests/vm/lifecycle.sh (the test command runs 160 cycles, in tests/vm/modules.sh).
LIFECYCLE_CYCLES ?= 1000
lifecycle-long: all
	cargo build --release -p kvm-tests
	./scripts/vm-run.sh --timeout 3600 --env LIFECYCLE_CYCLES=$(LIFECYCLE_CYCLES) tests/vm/lifecycle-long.sh

# The fuzzers on the debug kernel (KASAN, kmemleak, lockdep, UBSAN), ours only.
fuzz-debug:
	KVM_RS_KERNEL=debug ./scripts/fuzz.sh $(DURATION) ours

selftests: all
	./scripts/selftests.sh

clean:
	-[ -n "$(KERNELDIR)" ] && $(KBUILD) clean
	rm -rf x86/kvm/generated

.PHONY: all install check check-debug fuzz fuzz-debug lifecycle-long run bench selftests clean
