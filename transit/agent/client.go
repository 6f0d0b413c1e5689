package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// FetchStatus asks one agent for its status. addr is the agent's --listen
// address (host:port) or a URL.
func FetchStatus(ctx context.Context, c *http.Client, addr string) (Status, error) {
	var st Status
	url := addr
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return st, fmt.Errorf("%w (is 'tencrypt agent' running with --listen %s?)", err, addr)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /status: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("read status: %w", err)
	}
	return st, nil
}

// CollectStatus asks every agent. The error lists the unreachable and
// unhealthy ones and, if requireReady, what keeps the meshes from being
// complete (MeshProblems); the statuses that were read are returned with it.
func CollectStatus(ctx context.Context, c *http.Client, agents []string, requireReady bool) ([]Status, error) {
	var all []Status
	var errs []error
	for _, a := range agents {
		st, err := FetchStatus(ctx, c, a)
		if err != nil {
			errs = append(errs, fmt.Errorf("agent %s: %w", a, err))
			continue
		}
		if !st.Healthy {
			errs = append(errs, fmt.Errorf("agent %s (node %s) is unhealthy: %s", a, st.Node, st.LastError))
		}
		all = append(all, st)
	}
	if requireReady {
		for _, p := range MeshProblems(all) {
			errs = append(errs, errors.New(p))
		}
	}
	return all, errors.Join(errs...)
}
