package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/kmsplugin"
)

func newKMSPluginCmd() *cobra.Command {
	var listen, key, health string
	cmd := &cobra.Command{
		Use:   "kms-plugin --listen unix:///PATH [--key cluster-etcd]",
		Short: "Serve the Kubernetes KMS v2 API, so kube-apiserver encrypts Secrets in etcd under tencrypt's keys",
		Long: `Serve the Kubernetes KMS v2 plugin API on a Unix socket until interrupted.

kube-apiserver, given an EncryptionConfiguration whose kms provider (apiVersion
v2) names this socket, encrypts each resource it writes to etcd with a data key
derived from a seed it asks this plugin to wrap. The seed is wrapped under one
cluster key of the key hierarchy (--key, default cluster-etcd), through the
configured backend: a local keyring, Vault Transit or a PKCS#11 token (the same
--backend/--config settings as 'tencrypt keys'). Every unwrap is audited.

KMS v2 requests carry no namespace: one cluster key protects all of etcd, never
a tenant's key. Create it once with admin credentials:

  tencrypt keys create cluster-etcd

Rotation is a KEK rotation of that key ('tencrypt keys rotate cluster-etcd');
kube-apiserver notices the new key_id within a minute, without a restart, and
keeps reading data written under older versions until they are retired. The
weekly runbook and the formats are in docs/KMS-PLUGIN.md; deploy/kms-plugin/
holds the EncryptionConfiguration and a static-pod manifest.

The socket is created with mode 0600. --health-listen serves GET /healthz (200
when the backend answers and holds the key) and GET /metrics (Prometheus).`,
		Example: `  # Local keyring, socket where the EncryptionConfiguration points
  tencrypt kms-plugin --listen unix:///var/run/tencrypt/kms.sock \
      --local-path /etc/tencrypt/keyring --local-key-file /etc/tencrypt/admin.key

  # Vault Transit, with a health endpoint on the node
  tencrypt kms-plugin --backend vault --config /etc/tencrypt/keys.yaml \
      --listen unix:///var/run/tencrypt/kms.sock --health-listen 127.0.0.1:8788`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runKMSPlugin(cmd, listen, key, health) },
	}
	bindKeysFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "socket to serve, as the EncryptionConfiguration's endpoint names it: unix:///absolute/path")
	f.StringVar(&key, "key", kmsplugin.DefaultKey, "name of the cluster key in the hierarchy (a DNS-1123 label)")
	f.StringVar(&health, "health-listen", "", "host:port for GET /healthz and /metrics (none if empty)")
	return cmd
}

// runKMSPlugin opens the key backend and serves the plugin on listen until
// the command's context ends.
func runKMSPlugin(cmd *cobra.Command, listen, key, health string) error {
	if listen == "" {
		return usageError{fmt.Errorf("--listen is required, e.g. --listen unix:///var/run/tencrypt/kms.sock")}
	}
	if _, err := kmsplugin.SocketPath(listen); err != nil {
		return usageError{err}
	}
	p, cfg, err := openKeys(cmd)
	if err != nil {
		return err
	}
	defer p.Close()
	audit, err := keys.OpenAuditFile(cfg.AuditLog)
	if err != nil {
		return err
	}
	defer audit.Close()
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	reg := prometheus.NewRegistry()
	plug, err := kmsplugin.New(kmsplugin.Config{
		Envelope: keys.NewEnvelope(p, audit, time.Now), Key: key, Metrics: reg, Log: log,
	})
	if err != nil {
		return usageError{err}
	}
	// A missing key or an unreachable backend is reported now, but
	// not fatal: the plugin must be up before kube-apiserver, and
	// Status tells kube-apiserver when the key becomes usable.
	if err := plug.Healthy(cmd.Context()); err != nil {
		log.Warn("cluster key not usable yet", "key", plug.Key(), "error", err,
			"hint", "create it with 'tencrypt keys create "+plug.Key()+"' or check the backend")
	}
	srv, err := kmsplugin.NewServer(plug, listen, health, reg)
	if err != nil {
		return err
	}
	log.Info("serving KMS v2", "socket", srv.SocketPath(), "key", plug.Key(), "backend", p.Name(), "health", srv.HTTPAddr())
	return srv.Serve(cmd.Context())
}
