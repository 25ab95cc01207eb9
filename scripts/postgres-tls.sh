#!/usr/bin/env bash
# Turns on TLS in the local PostgreSQL (127.0.0.1:5432, the one scripts/postgres.sh starts), so the tests can
# connect with DATABASE_URL=...?ssl=require or ?ssl=verify-full (tests/store/test_postgres_tls.py). Idempotent:
# a self-signed certificate for localhost/127.0.0.1 in the data directory (key owned by postgres, mode 0600),
# ssl_cert_file/ssl_key_file/ssl = on by ALTER SYSTEM, a reload (no restart), then a check over sslmode=require.
# Setting it up needs root or the postgres user, and trust authentication for postgres on 127.0.0.1.
set -euo pipefail
host=127.0.0.1 port=${1:-5432}  # another port: a throwaway cluster
admin=(psql -h "$host" -p "$port" -U postgres -d postgres -X -v ON_ERROR_STOP=1 -Atq)

encrypted() {
  [[ $(PGSSLMODE=require "${admin[@]}" -c "select ssl from pg_stat_ssl where pid = pg_backend_pid()" 2>/dev/null) == t ]]
}
ours() { encrypted && [[ $("${admin[@]}" -c "show ssl_cert_file") == "$cert" ]]; }

if ! pg_isready -q -h "$host" -p "$port" 2>/dev/null; then
  echo "PostgreSQL is not running on $host:$port (scripts/postgres.sh starts it); TLS not set up" >&2
  exit 0
fi
data_dir=$("${admin[@]}" -c "show data_directory")
cert="$data_dir/convoscope-tls.crt" key="$data_dir/convoscope-tls.key"
# Done when TLS is on with this certificate. Another one (Debian's snakeoil names the machine, not 127.0.0.1)
# would fail the test's verify-full check, so it is replaced.
if ours; then exit 0; fi
if [[ $(id -u) -ne 0 && $(id -un) != postgres ]]; then
  echo "PostgreSQL on $host:$port does not have TLS with $cert and only root or postgres can set it up:" \
       "run scripts/postgres-tls.sh as root; tests/store/test_postgres_tls.py will fail until then" >&2
  exit 0
fi
if [[ ! -s $cert || ! -s $key ]] || ! openssl x509 -checkend 86400 -noout -in "$cert" >/dev/null; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    -keyout "$scratch/key" -out "$scratch/crt" 2>/dev/null
  # PostgreSQL refuses a key that others can read; the certificate is public.
  install -m 0600 "$scratch/key" "$key"
  install -m 0644 "$scratch/crt" "$cert"
  if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$key" "$cert"; fi
fi
"${admin[@]}" >/dev/null <<SQL
ALTER SYSTEM SET ssl_cert_file = '$cert';
ALTER SYSTEM SET ssl_key_file = '$key';
ALTER SYSTEM SET ssl = on;
SELECT pg_reload_conf();
SQL
for _ in $(seq 1 20); do  # the postmaster applies the reload asynchronously
  if ours; then
    echo "PostgreSQL on $host:$port: TLS on (certificate $cert)"
    exit 0
  fi
  sleep 0.25
done
echo "PostgreSQL on $host:$port did not turn TLS on; see its log (pg_lsclusters shows where)" >&2
exit 1
