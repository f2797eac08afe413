// The Pulumi Kubernetes provider's gRPC plugin, built outside its repository.
//
// Upstream's cmd/pulumi-resource-kubernetes embeds schema-embed.json and
// terraform-mapping-embed.json, which `go generate` writes at release time and which
// therefore are not in the published module. This main embeds the committed sources of
// those two files instead (the Starling toolchain copies them from the module into
// this directory before building) and serves the provider exactly as upstream's does.
package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema.json
var committedSchema []byte

//go:embed terraform-mapping.json
var terraformMapping []byte

func main() {
	schema, err := stampVersion(committedSchema, version.Version)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-kubernetes: %v\n", err)
		os.Exit(1)
	}
	provider.Serve("kubernetes", version.Version, schema, terraformMapping)
}

// stampVersion sets the schema's top-level "version", as upstream's generate step does;
// the committed schema.json leaves it empty. Only the top level is decoded: the nested
// type definitions are kept as raw bytes.
func stampVersion(schema []byte, providerVersion string) ([]byte, error) {
	var topLevel map[string]json.RawMessage
	if err := json.Unmarshal(schema, &topLevel); err != nil {
		return nil, fmt.Errorf("embedded schema.json is not a JSON object: %w", err)
	}
	encodedVersion, err := json.Marshal(providerVersion)
	if err != nil {
		return nil, err
	}
	topLevel["version"] = encodedVersion
	return json.Marshal(topLevel)
}
