# shellcheck shell=sh
# Sourced by the RUN steps of docker/Dockerfile (bind-mounted, never copied into a layer). It applies this build's
# optional inputs to the one step: an extra CA (secret `extra_ca`), a pip config (secret `pip_conf`), pip index
# build args and an apt mirror. Whatever it writes lives in a temp dir removed when the step's shell exits.

_la_tmp="$(mktemp -d)"
trap 'rm -rf "$_la_tmp"' EXIT

# Build args default to "": unset the empty ones so pip and apt keep their own defaults.
for _la_var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_NO_INDEX APT_MIRROR TORCH_INDEX_URL; do
    eval "_la_val=\${$_la_var:-}"
    if [ -z "$_la_val" ]; then unset "$_la_var"; fi
done

_la_apt_opts=""
if [ -s /run/secrets/extra_ca ]; then
    # The system bundle plus the extra certificates, for pip, Python, curl and apt (https mirrors).
    _la_system_ca=/etc/ssl/certs/ca-certificates.crt
    if [ ! -s "$_la_system_ca" ]; then
        _la_system_ca="$(python3 -c 'import pip._vendor.certifi as c; print(c.where())' 2>/dev/null || true)"
    fi
    cat ${_la_system_ca:+"$_la_system_ca"} /run/secrets/extra_ca > "$_la_tmp/ca.pem"
    export PIP_CERT="$_la_tmp/ca.pem" SSL_CERT_FILE="$_la_tmp/ca.pem" REQUESTS_CA_BUNDLE="$_la_tmp/ca.pem" \
        CURL_CA_BUNDLE="$_la_tmp/ca.pem"
    _la_apt_opts="-o Acquire::https::CaInfo=$_la_tmp/ca.pem"
fi
if [ -s /run/secrets/pip_conf ]; then
    export PIP_CONFIG_FILE=/run/secrets/pip_conf
fi

# apt_install PACKAGE...: install without recommends, through APT_MIRROR when set (it replaces the scheme and host
# of the Debian/Ubuntu archives, e.g. http://mirrors.example.cn), and leave no lists, caches or mirror behind.
apt_install() {
    _la_sources="$(ls /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
    if [ -n "${APT_MIRROR:-}" ]; then
        for _la_f in $_la_sources; do
            cp -p "$_la_f" "$_la_tmp/$(echo "$_la_f" | tr / _)"
            sed -i -E "s#https?://(deb\.debian\.org|security\.debian\.org|archive\.ubuntu\.com|security\.ubuntu\.com|ports\.ubuntu\.com)#${APT_MIRROR%/}#g" "$_la_f"
        done
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get $_la_apt_opts update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get $_la_apt_opts install -y -q --no-install-recommends "$@"
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
    if [ -n "${APT_MIRROR:-}" ]; then
        for _la_f in $_la_sources; do
            cp -p "$_la_tmp/$(echo "$_la_f" | tr / _)" "$_la_f"
        done
    fi
}
