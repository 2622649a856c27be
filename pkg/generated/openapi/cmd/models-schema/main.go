/*
Copyright The Switchboard Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command models-schema prints the OpenAPI v2 definitions of every generated
// model as one Swagger document. hack/update-codegen.sh feeds it to
// applyconfiguration-gen, which needs the schemas to know list and map
// semantics for server-side apply.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/switchboard-io/switchboard/pkg/generated/openapi"
)

func main() {
	if err := writeSchema(); err != nil {
		fmt.Fprintf(os.Stderr, "models-schema: %v\n", err)
		os.Exit(1)
	}
}

func writeSchema() error {
	ref := func(name string) spec.Ref { return spec.MustCreateRef("#/definitions/" + name) }
	definitions := openapi.GetOpenAPIDefinitions(ref)

	models := make(map[string]spec.Schema, len(definitions))
	for name, def := range definitions {
		schema := def.Schema
		// A definition whose v3 schema differs carries its v2 form in an
		// extension; applyconfiguration-gen reads v2.
		if v2, ok := def.Schema.Extensions[common.ExtensionV2Schema].(spec.Schema); ok {
			schema = v2
		}
		models[name] = schema
	}

	doc := spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger:     "2.0",
		Info:        &spec.Info{InfoProps: spec.InfoProps{Title: "Switchboard models", Version: "unversioned"}},
		Definitions: models,
	}}
	out, err := json.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("encoding the models: %w", err)
	}
	_, err = os.Stdout.Write(out)
	return err
}
