#!/bin/sh
# One-shot (docker-compose `certs`): a private CA and certificates for the services of this
# compose file, written once into the `certs` volume. Replace them with your own for anything
# that is not a laptop: the gateway reads EARPIECE_TLS_CERT/KEY (and EARPIECE_TLS_CLIENT_CA for
# mTLS), Postgres ssl_cert_file/ssl_key_file.
set -eu
out=/certs
if [ -s "$out/ca.crt" ]; then
    echo "certificates already in $out; delete the certs volume to make new ones"
    exit 0
fi
command -v openssl >/dev/null || apk add --no-cache openssl >/dev/null
umask 077
cd "$out"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -subj "/CN=earpiece compose CA" -keyout ca.key -out ca.crt
issue() {  # name, subjectAltName, extendedKeyUsage
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=$1" -keyout "$1.key" -out "$1.csr"
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
        -extfile "$1.ext" -out "$1.crt"
    rm "$1.csr" "$1.ext"
}
issue gateway "DNS:gateway,DNS:localhost,IP:127.0.0.1" serverAuth
issue postgres "DNS:postgres" serverAuth
issue client "DNS:client" clientAuth
# Readable by the processes that use them, and nobody else: Postgres runs as uid 999, the
# Earpiece image as uid 10001 (Dockerfile); the CA certificate is public.
chown 999:999 postgres.key postgres.crt
chown 10001:10001 gateway.key gateway.crt client.key client.crt
chmod 600 ./*.key
chmod 644 ./*.crt
rm ca.key  # nothing more is signed here
echo "made a CA and certificates in $out"
