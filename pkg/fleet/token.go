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

package fleet

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
)

// A fleet resourceVersion records the resourceVersion of every member in a
// list or watch: "f1." and the base64url (no padding) of a JSON object from
// Cluster name to that member's resourceVersion. A fleet continue token is
// "f1." and the base64url of a JSON object that holds the member to go on
// in, that member's own continue token, and the resourceVersions of the
// list's first page. Both are opaque to clients, as Kubernetes' are.

// tokenPrefix starts every token and resourceVersion the fleet issues; the
// digit is its format's version.
const tokenPrefix = "f1."

// maxTokenBytes bounds what a token may decode to. A thousand members with
// long names and resourceVersions fit in a tenth of it.
const maxTokenBytes = 1 << 20

// Versions maps each member's Cluster name to its resourceVersion, or to
// a mark that says why a list left the member out.
type Versions map[string]string

// The marks of members a list left out. Kubernetes resourceVersions are
// decimal numbers; no member's starts with "~".
const (
	// markDown: the member could not be reached. A watch from this
	// resourceVersion ends with 410 once it can, for the client to list
	// again and see the member's objects.
	markDown = "~down"
	// markFailed: the member refused the caller or failed otherwise. A
	// watch leaves it out.
	markFailed = "~failed"
)

// markFor is the mark of a member that failed with err: down when it gave
// no answer (switchboard's 502 or 503: unreachable, known down, no usable
// credentials), failed for every answer of its own and for a timeout.
func markFor(err error) string {
	if !answered(err) && reasonOf(err) == "unreachable" && !apierrors.IsTimeout(err) {
		return markDown
	}
	return markFailed
}

// listed says whether a list holds the member's items, at rv.
func listed(rv string) bool { return rv != "" && !strings.HasPrefix(rv, "~") }

// Continue is where the next page of a fleet list starts.
type Continue struct {
	// Cluster is the member to go on in, the first whose name is not less
	// than this if it is no longer in the fleet.
	Cluster string `json:"c"`
	// Token is the member's own continue token; empty to start at its
	// first item.
	Token string `json:"t,omitempty"`
	// Versions are the members' resourceVersions on the first page. A
	// member with none (it failed then, or joined later) is not listed.
	Versions Versions `json:"rv"`
}

// EncodeVersions makes the fleet resourceVersion of versions.
func EncodeVersions(versions Versions) string {
	if versions == nil {
		versions = Versions{}
	}
	return encode(versions)
}

// DecodeVersions reads a fleet resourceVersion; a malformed one is a 400.
func DecodeVersions(rv string) (Versions, error) {
	versions := Versions{}
	if err := decode(rv, &versions); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("resourceVersion %s: %v; use the resourceVersion of a list or event from this fleet endpoint, 0, or none", quoteShort(rv), err))
	}
	if err := versions.validate(); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("resourceVersion %s: %v; use the resourceVersion of a list or event from this fleet endpoint, 0, or none", quoteShort(rv), err))
	}
	return versions, nil
}

// EncodeContinue makes the fleet continue token of c.
func EncodeContinue(c *Continue) string { return encode(c) }

// DecodeContinue reads a fleet continue token; a malformed one is a 400.
func DecodeContinue(token string) (*Continue, error) {
	c := &Continue{}
	err := decode(token, c)
	if err == nil {
		err = c.validate()
	}
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("continue token %s: %v; use the continue token of the previous page of this fleet list, or start the list again", quoteShort(token), err))
	}
	return c, nil
}

func encode(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		// Maps and structs of strings always marshal.
		panic(fmt.Sprintf("encoding a fleet token: %v", err))
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(data)
}

func decode(token string, into any) error {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return fmt.Errorf("is not one a fleet endpoint issued (it does not start with %q)", tokenPrefix)
	}
	if base64.RawURLEncoding.DecodedLen(len(rest)) > maxTokenBytes {
		return fmt.Errorf("is longer than %d bytes", maxTokenBytes)
	}
	data, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return fmt.Errorf("is not base64url: %w", err)
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(into); err != nil {
		return fmt.Errorf("does not hold a fleet token: %w", err)
	}
	if decoder.More() {
		return fmt.Errorf("has data after the token")
	}
	return nil
}

func (v Versions) validate() error {
	for name, rv := range v {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return fmt.Errorf("names no Cluster: %q: %s", name, strings.Join(errs, "; "))
		}
		if rv == "" {
			return fmt.Errorf("holds an empty resourceVersion for cluster %q", name)
		}
		if strings.HasPrefix(rv, "~") && rv != markDown && rv != markFailed {
			return fmt.Errorf("holds an unknown mark %q for cluster %q", rv, name)
		}
	}
	return nil
}

func (c *Continue) validate() error {
	if errs := validation.IsDNS1123Subdomain(c.Cluster); len(errs) > 0 {
		return fmt.Errorf("names no Cluster: %q: %s", c.Cluster, strings.Join(errs, "; "))
	}
	if c.Versions == nil {
		return fmt.Errorf("holds no resourceVersions")
	}
	return c.Versions.validate()
}

// quoteShort quotes a token for an error message, cut to a readable length.
func quoteShort(s string) string {
	const most = 40
	if len(s) > most {
		return fmt.Sprintf("%q...", s[:most])
	}
	return fmt.Sprintf("%q", s)
}
