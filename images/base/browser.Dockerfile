# csc-base-browser where a Debian mirror is reachable from a build: BASE_IMAGE (python:3.11-slim)
# plus chromium, chromedriver and a font, for the viewer's screenshots (nothing is installed when
# the base has chromium already). Without a reachable mirror, `images/base/build.sh --browser`
# makes the same image from Debian packages on the host. No build context:
#   docker build --build-arg BASE_IMAGE=python:3.11-slim -t csc-base-browser:latest - < images/base/browser.Dockerfile
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
RUN if ! command -v chromium >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver fonts-dejavu-core \
      && rm -rf /var/lib/apt/lists/*; fi
