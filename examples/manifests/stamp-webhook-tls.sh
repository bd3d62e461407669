#!/bin/sh
# TLS for the stamping webhook without cert-manager: a private CA, a serving certificate for the
# Service's DNS names, the Secret, and the CA in the MutatingWebhookConfiguration's caBundle.
# Run once (and again before the certificate expires, after 365 days), with kubectl pointing at
# the cluster, after `kubectl apply -f stamp-webhook.yaml` minus its Issuer and Certificate.
set -eu
NAMESPACE=k8s-otel-stamp
SERVICE=k8s-otel-stamp
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=k8s-otel-stamp-ca" \
  -keyout ca.key -out ca.crt
openssl req -newkey rsa:2048 -nodes -subj "/CN=$SERVICE.$NAMESPACE.svc" -keyout tls.key -out tls.csr
printf 'subjectAltName=DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\n' \
  "$SERVICE" "$NAMESPACE" "$SERVICE" "$NAMESPACE" > san.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
  -extfile san.ext -out tls.crt
kubectl -n "$NAMESPACE" create secret tls k8s-otel-stamp-tls --cert=tls.crt --key=tls.key \
  --dry-run=client -o yaml | kubectl apply -f -
CA_BUNDLE=$(base64 < ca.crt | tr -d '\n')
kubectl patch mutatingwebhookconfiguration k8s-otel-stamp --type=json \
  -p "[{\"op\": \"add\", \"path\": \"/webhooks/0/clientConfig/caBundle\", \"value\": \"$CA_BUNDLE\"}]"
