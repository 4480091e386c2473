//go:build tools

// Package tools records the skaffold command this module builds.
package tools

import (
	_ "github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold"
)
