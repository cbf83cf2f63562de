#!/bin/sh
# Run once by each final stage of docker/Dockerfile (bind-mounted, not kept): the non-root user and its group, the
# /models volume, and the CANN shell hook for `docker exec` shells. Usage: image-setup.sh UID GID
set -eu
uid="$1"
gid="$2"

# The group owning /dev/davinci* on Ascend hosts is HwHiAiUser; reuse a group that already has the gid.
group="$(getent group "$gid" | cut -d: -f1 || true)"
if [ -z "$group" ]; then
    groupadd --gid "$gid" HwHiAiUser
    group=HwHiAiUser
fi
user="$(getent passwd "$uid" | cut -d: -f1 || true)"
if [ -z "$user" ]; then
    useradd --uid "$uid" --gid "$gid" --home-dir /home/llama --create-home --shell /bin/bash llama
else
    usermod --gid "$gid" --home /home/llama --move-home "$user"
fi
mkdir -p /models /home/llama
chown "$uid:$gid" /models /home/llama
chmod 0775 /models

# One hook for every shell: login shells read /etc/profile.d, interactive ones /etc/bash.bashrc, and `bash -c`
# reads $BASH_ENV (set to the hook by the Dockerfile). The hook sources only the CANN scripts present at run time.
python3 -m llama_ascend.ascend_env profile > /etc/profile.d/llama-ascend-cann.sh
chmod 0644 /etc/profile.d/llama-ascend-cann.sh
printf '\n# llama-ascend: the CANN environment\n[ -f /etc/profile.d/llama-ascend-cann.sh ] && . /etc/profile.d/llama-ascend-cann.sh\n' \
    >> /etc/bash.bashrc

# The entrypoint starts (and its import works) in this image.
llama-ascend --version
