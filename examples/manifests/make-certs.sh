#!/bin/sh
# TLS for the example webhooks without cert-manager: a CA and one serving certificate per webhook
# Service (openssl), stored as the Secrets the Deployments mount, and the CA written into the
# webhook configurations' caBundle.
#
#   examples/manifests/make-certs.sh [OUT_DIR]        # needs openssl and kubectl, run after
#                                                     # namespace.yaml and the webhook configurations
# With K8S_OTEL_CERTS_ONLY=1 it only writes the files into OUT_DIR (default ./webhook-certs).
set -eu

out=${1:-./webhook-certs}
namespace=webhooks
mkdir -p "$out"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -subj "/CN=k8s-otel example webhooks CA" -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null

for service in replicas-webhook labels-webhook; do
  dns="$service.$namespace.svc"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=$dns" -keyout "$out/$service.key" -out "$out/$service.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$dns" > "$out/$service.ext"
  openssl x509 -req -in "$out/$service.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days 365 -extfile "$out/$service.ext" -out "$out/$service.crt" 2>/dev/null
done

if [ "${K8S_OTEL_CERTS_ONLY:-}" = 1 ]; then
  exit 0
fi

for service in replicas-webhook labels-webhook; do
  kubectl -n "$namespace" create secret tls "$service-tls" \
    --cert "$out/$service.crt" --key "$out/$service.key" --dry-run=client -o yaml | kubectl apply -f -
done
ca=$(base64 < "$out/ca.crt" | tr -d '\n')
kubectl patch validatingwebhookconfiguration replicas-policy --type=json \
  -p "[{\"op\": \"replace\", \"path\": \"/webhooks/0/clientConfig/caBundle\", \"value\": \"$ca\"}]"
kubectl patch mutatingwebhookconfiguration default-labels --type=json \
  -p "[{\"op\": \"replace\", \"path\": \"/webhooks/0/clientConfig/caBundle\", \"value\": \"$ca\"}]"
