# images/images.mk — container images of the csc stages; included by the top-level Makefile.
#
#   make images            build every stage image (cached: rebuilds only what changed)
#   make image-<stage>     one image (fetcher trainer exporter predictor postprocessor packer evaluator viewer)
#   make image-predictor-gpu   the predictor with onnxruntime-gpu (not part of `images`)
#   make base-image        choose the base image: python:3.11-slim when it is present or pullable,
#                          else build csc-base:latest from Debian packages (images/base/build.sh)
#   make wheelhouse        download/build every image's wheels on the host (images/wheelhouse/)
#   make conformance PREDICTOR_IMAGE=IMAGE   run the predictor contract kit against an image
#   make image-sizes       a table of image sizes
#
# For the stage targets (RUNNER=docker):  $(call docker_run,STAGE) ARGS...
# expands to `docker run --rm --user UID:GID -v $(abspath $(DATA)):/data [options] IMAGE` and the
# stage's console script is the image's entrypoint, so ARGS are the stage's own flags with /data paths.
#
# Variables (override on the command line):
#   BASE_IMAGE        force a base image (default: decided once by `make base-image`, see above)
#   PREDICTOR_IMAGE   the predictor image the pipeline runs (default csc-predictor:latest)
#   PREDICTOR_GPU=1   run the predictor with `--gpus all` (and default PREDICTOR_IMAGE to csc-predictor-gpu:latest)
#   DOCKER_SHM_SIZE   /dev/shm of the trainer container (default 2g; torch DataLoader workers use it)
#   FETCH_NETWORK     network of the fetcher (default bridge; `host` to reach an S3 endpoint on 127.0.0.1)
#   VIEW_NETWORK      network of the viewer (default host: its HTTP server binds where VIEW_ARGS say)
#   DOCKER_RUN_ARGS   extra `docker run` options for every stage

IMAGES_DIR     := images
WHEELHOUSE     := $(IMAGES_DIR)/wheelhouse
IMAGE_STAMPS   := $(WHEELHOUSE)/.stamps
IMAGE_STAGES   := fetcher trainer exporter predictor postprocessor packer evaluator viewer
DEFAULT_BASE   := python:3.11-slim
CSC_VERSION    ?= 0.1.0
DOCKER         ?= docker
DOCKER_BUILD   ?= DOCKER_BUILDKIT=0 $(DOCKER) build
# The legacy builder's deprecation notice, dropped from the logs (the build itself stays verbose on errors).
_quiet_build   := 2> >(grep -v -E 'DEPRECATED|buildx|BuildKit|docs.docker.com|environment-variable|^ *$$' >&2) >/dev/null
DOCKER_SHM_SIZE ?= 2g
FETCH_NETWORK  ?= bridge
VIEW_NETWORK   ?= host
DOCKER_RUN_ARGS ?=
PREDICTOR_GPU  ?= 0
IMAGE_PYTHON   ?= $(or $(wildcard $(CURDIR)/.venv/bin/python),python3)

ifeq ($(PREDICTOR_GPU),1)
  PREDICTOR_IMAGE ?= csc-predictor-gpu:latest
else
  PREDICTOR_IMAGE ?= csc-predictor:latest
endif

# The image each stage runs; override one with IMAGE_<stage>=name:tag.
$(foreach s,$(IMAGE_STAGES),$(eval IMAGE_$(s) ?= csc-$(s):latest))
IMAGE_predictor_run = $(PREDICTOR_IMAGE)

# Per-stage `docker run` options: network off except the fetcher (and the viewer's HTTP server).
DOCKER_OPTS_fetcher       = --network $(FETCH_NETWORK) $(foreach v,AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_DEFAULT_REGION,-e $(v))
DOCKER_OPTS_trainer       = --network none --shm-size $(DOCKER_SHM_SIZE)
DOCKER_OPTS_exporter      = --network none
DOCKER_OPTS_predictor     = --network none $(if $(filter 1,$(PREDICTOR_GPU)),--gpus all)
DOCKER_OPTS_postprocessor = --network none
DOCKER_OPTS_packer        = --network none
DOCKER_OPTS_evaluator     = --network none
DOCKER_OPTS_viewer        = --network $(VIEW_NETWORK)

docker_image = $(if $(filter predictor,$(1)),$(IMAGE_predictor_run),$(IMAGE_$(1)))
# $(call docker_run,STAGE): the command prefix that runs STAGE's image on $(DATA) mounted at /data.
docker_run = $(DOCKER) run --rm --user $$(id -u):$$(id -g) -v $(abspath $(DATA)):/data -w /data \
  $(DOCKER_OPTS_$(1)) $(DOCKER_RUN_ARGS) $(call docker_image,$(1))
$(foreach s,$(IMAGE_STAGES),$(eval DOCKER_RUN_$(s) = $$(call docker_run,$(s))))

# ---------------------------------------------------------------- stamps and staleness
# A stamp per image; an image stamp is dropped when its image is gone from the daemon.
ifneq ($(filter docker,$(RUNNER))$(filter images image-% base-image conformance image-sizes,$(MAKECMDGOALS)),)
  _present_images := $(shell $(DOCKER) images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null)
  $(foreach s,$(IMAGE_STAGES) predictor-gpu,$(if $(filter csc-$(s):latest,$(_present_images)),,\
    $(shell rm -f $(IMAGE_STAMPS)/image-$(s))))
  $(foreach b,base viewer-base,$(if $(wildcard $(IMAGE_STAMPS)/$(b)),\
    $(if $(filter $(shell cat $(IMAGE_STAMPS)/$(b)),$(_present_images)),,$(shell rm -f $(IMAGE_STAMPS)/$(b)))))
endif

# Sources a stage's image is made of: csc_common, the stage's package, the schemas.
_src = $(shell find services/$(1)/src services/$(1)/pyproject.toml -type f \
          -not -path '*/__pycache__/*' -not -path '*.egg-info*' -not -name '*.pyc' 2>/dev/null)
_common_src := $(call _src,common) $(wildcard schemas/*.json)
image_ctx = $(if $(filter predictor,$(1)),predictor-cpu,$(1))

.PHONY: images base-image wheelhouse conformance image-sizes images-prune image-predictor-broken $(addprefix image-,$(IMAGE_STAGES)) image-predictor-gpu

images: $(addprefix image-,$(IMAGE_STAGES)) ## build every stage image (cached)

base-image: $(IMAGE_STAMPS)/base ## the base image: python:3.11-slim if pullable, else csc-base from Debian packages

# The stamp holds the name of the base image the stage images build on.
$(IMAGE_STAMPS)/base: $(IMAGES_DIR)/base/build.sh
	@mkdir -p $(@D)
	@set -e; if [ -n "$(BASE_IMAGE)" ]; then base="$(BASE_IMAGE)"; \
	elif $(DOCKER) image inspect $(DEFAULT_BASE) >/dev/null 2>&1 \
	  || timeout 120 $(DOCKER) pull -q $(DEFAULT_BASE) >/dev/null 2>&1; then base=$(DEFAULT_BASE); \
	else echo "images: $(DEFAULT_BASE) is not pullable here; building csc-base:latest from Debian packages"; \
	  bash $(IMAGES_DIR)/base/build.sh csc-base:latest; base=csc-base:latest; fi; \
	echo "images: base image $$base"; echo "$$base" > $@

wheelhouse: $(foreach s,$(IMAGE_STAGES),$(WHEELHOUSE)/$(call image_ctx,$(s))/.local) ## download every image's wheels on the host

# Third-party wheels: re-resolved when a pyproject changes; the csc wheels: rebuilt when a source changes.
define _wheel_rules
$(WHEELHOUSE)/$(1)/.deps: services/common/pyproject.toml services/$(2)/pyproject.toml $(IMAGES_DIR)/wheelhouse.sh
	PYTHON=$(IMAGE_PYTHON) bash $(IMAGES_DIR)/wheelhouse.sh $(1)
	@touch $$@

$(WHEELHOUSE)/$(1)/.local: $(WHEELHOUSE)/$(1)/.deps $(_common_src) $(call _src,$(2))
	PYTHON=$(IMAGE_PYTHON) bash $(IMAGES_DIR)/wheelhouse.sh --local-only $(1)
	@touch $$@
endef
$(foreach s,$(IMAGE_STAGES),$(eval $(call _wheel_rules,$(call image_ctx,$(s)),$(s))))
$(eval $(call _wheel_rules,predictor-gpu,predictor))

# Every image comes from one Dockerfile: the stage is its target (and STAGE build argument).
STAGE_DOCKERFILE := $(IMAGES_DIR)/stage/Dockerfile

# docker build; $(1)=image key, $(2)=stage (the target), $(3)=wheelhouse folder, $(4)=tag,
# $(5)=extra build args, $(6)=the stamp naming the base image
define _image_rule
image-$(1): $(IMAGE_STAMPS)/image-$(1)
$(IMAGE_STAMPS)/image-$(1): $(STAGE_DOCKERFILE) $(WHEELHOUSE)/$(3)/.local $(6)
	@echo "images: building $(4)"
	@set -e; base=$$$$(cat $(6)); t0=$$$$(date +%s); \
	$(DOCKER_BUILD) -q -f $(STAGE_DOCKERFILE) --target $(2) -t $(4) \
	  --build-arg STAGE=$(2) --build-arg BASE_IMAGE=$$$$base --build-arg IMAGE_NAME=$(4) --build-arg VERSION=$(CSC_VERSION) \
	  --build-arg REVISION=$$$$(git rev-parse --short HEAD 2>/dev/null || echo unknown) $(5) \
	  $(WHEELHOUSE)/$(3) $$(_quiet_build); \
	echo "images: $(4) built in $$$$(( $$$$(date +%s) - t0 ))s on $$$$base, $$$$($(DOCKER) image inspect -f '{{.Size}}' $(4) | awk '{printf "%.0f MB", $$$$1/1e6}')"
	@touch $$@
endef
$(foreach s,$(filter-out viewer,$(IMAGE_STAGES)),\
  $(eval $(call _image_rule,$(s),$(s),$(call image_ctx,$(s)),csc-$(s):latest,,$(IMAGE_STAMPS)/base)))
$(eval $(call _image_rule,predictor-gpu,predictor,predictor-gpu,csc-predictor-gpu:latest,--build-arg VARIANT=gpu --build-arg PIP_CHECK=0,$(IMAGE_STAMPS)/base))

# The viewer's screenshots need chromium, so it builds on csc-base-browser:latest: on the base built
# here, from Debian packages on the host (images/base/build.sh --browser), never from apt inside a
# build; on any other base (python:3.11-slim), that base + apt's chromium (images/base/browser.Dockerfile).
$(IMAGE_STAMPS)/viewer-base: $(IMAGE_STAMPS)/base $(IMAGES_DIR)/base/build.sh $(IMAGES_DIR)/base/browser.Dockerfile
	@set -e; base=$$(cat $(IMAGE_STAMPS)/base); \
	if [ "$$base" = csc-base:latest ]; then bash $(IMAGES_DIR)/base/build.sh --browser csc-base-browser:latest; \
	else $(DOCKER_BUILD) -q --build-arg BASE_IMAGE=$$base -t csc-base-browser:latest \
	  - < $(IMAGES_DIR)/base/browser.Dockerfile $(_quiet_build); fi; echo csc-base-browser:latest > $@
$(eval $(call _image_rule,viewer,viewer,viewer,csc-viewer:latest,,$(IMAGE_STAMPS)/viewer-base))

image-sizes: ## a table of the stage images' sizes
	@printf '| image | size |\n|---|---:|\n'; \
	for i in csc-base:latest $(foreach s,$(IMAGE_STAGES),csc-$(s):latest) csc-predictor-gpu:latest; do \
	  $(DOCKER) image inspect -f '{{.Size}}' $$i >/dev/null 2>&1 || continue; \
	  printf '| %s | %s MB |\n' $$i $$($(DOCKER) image inspect -f '{{.Size}}' $$i | awk '{printf "%.0f", $$1/1e6}'); done

images-prune: ## remove dangling image layers left by rebuilds
	$(DOCKER) image prune -f

# The predictor contract kit (tests/conformance/conformance_kit.py) against any image: it builds a small
# fixture, runs the image on it (mounted at /data) and prints one line per failed check; exit 1 on failure.
conformance: $(if $(filter csc-predictor:latest,$(PREDICTOR_IMAGE)),image-predictor) ## predictor contract kit against PREDICTOR_IMAGE
	$(IMAGE_PYTHON) tests/conformance/conformance_kit.py --image $(PREDICTOR_IMAGE) --name $(PREDICTOR_IMAGE)

# A predictor image that writes the wrong geometry: the conformance kit must reject it.
image-predictor-broken: image-predictor
	$(DOCKER_BUILD) -q -f $(IMAGES_DIR)/testing/broken-predictor/Dockerfile -t csc-predictor-broken:test \
	  --build-arg PREDICTOR_IMAGE=csc-predictor:latest tests/conformance $(_quiet_build)
