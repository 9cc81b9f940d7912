#!/usr/bin/env bash
# Runs inside `unshare --mount --net`: a private loopback and private /etc/nginx, /etc/letsencrypt,
# /var/www, /run and /var/log/nginx, so the rendered files sit at the exact paths the host uses.
# $1: folder holding the rendered files (etc/nginx/..., var/www/...) and requests.tsv.
set -euo pipefail
src=$1
ip link set lo up
for d in /etc/letsencrypt /var/www /run /var/log/nginx; do mount -t tmpfs tmpfs "$d"; done
work=$(mktemp -d)
cp -a /etc/nginx "$work/nginx" && mount --bind "$work/nginx" /etc/nginx
rm -f /etc/nginx/sites-enabled/*
cp -a "$src/etc/nginx/." /etc/nginx/
cp -a "$src/var/www/." /var/www/
for f in /etc/nginx/sites-available/matrix-*.conf; do ln -sfn "$f" "/etc/nginx/sites-enabled/$(basename "$f")"; done

# A throwaway CA and one certificate per name, where certbot would put them.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=matrix-pulumi test CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
for host in $(cat "$src/hosts"); do
  live=/etc/letsencrypt/live/$host; mkdir -p "$live"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout "$live/privkey.pem" -out "$work/$host.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$host" > "$work/$host.ext"
  openssl x509 -req -in "$work/$host.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -days 2 -extfile "$work/$host.ext" -out "$live/fullchain.pem" 2>/dev/null
done

# A control server that does offer TLS 1.1 (same certificate): it shows the TLS 1.1 client below
# can speak it, so a refusal from the rendered vhosts means something.
cat > /etc/nginx/sites-enabled/tls11-control.conf <<CONF
server {
    listen 4443 ssl;
    server_name tls11-control;
    ssl_certificate /etc/letsencrypt/live/$(head -n 1 "$src/hosts")/fullchain.pem;
    ssl_certificate_key /etc/letsencrypt/live/$(head -n 1 "$src/hosts")/privkey.pem;
    ssl_protocols TLSv1.1 TLSv1.2;
    ssl_ciphers DEFAULT:@SECLEVEL=0;
    return 200 "control\n";
}
CONF

echo "=== nginx -t"
nginx -t 2>&1 && echo "exit 0"
nginx
# Stand-ins for Synapse and its workers on their loopback ports ($src/ports) that echo what nginx
# forwarded and which port it reached.
ports=$(cat "$src/ports")
python3 - $ports <<'PY' &
import http.server, json, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        body = json.dumps({"path": self.path, "headers": dict(self.headers), "received": n,
                           "port": self.server.server_address[1]}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    do_GET = do_POST = reply
    def log_message(self, *a): pass
servers = [http.server.ThreadingHTTPServer(("127.0.0.1", int(p)), H) for p in sys.argv[1:]]
for s in servers[1:]: threading.Thread(target=s.serve_forever, daemon=True).start()
servers[0].serve_forever()
PY
upstream=$!
trap 'kill "$upstream" 2>/dev/null; nginx -s stop 2>/dev/null || true' EXIT
for port in $ports; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
done

# A client that can speak TLS 1.1 (OpenSSL 3 allows it at security level 0).
for target in "tls11-ours 443 $(sed -n 2p "$src/hosts")" "tls11-control 4443 tls11-control"; do
  set -- $target
  echo "=== $1"
  openssl s_client -connect "127.0.0.1:$2" -servername "$3" -CAfile "$work/ca.pem" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' \
    </dev/null 2>&1 | grep -E '^(New|CONNECTED)|^ +Protocol|alert|error' || true
done

# requests.tsv: name, host, port, path, extra curl arguments
while IFS=$'\t' read -r name host port path extra; do
  echo "=== $name"
  scheme=https; [ "$port" = 80 ] && scheme=http
  # shellcheck disable=SC2086
  curl -sS -D - --cacert "$work/ca.pem" --resolve "$host:$port:127.0.0.1" $extra "$scheme://$host:$port$path" 2>&1 || echo "curl exit $?"
  echo
done < "$src/requests.tsv"
