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
	"encoding/base64"
	"net/http"
	"reflect"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

func TestTokensRoundTrip(t *testing.T) {
	versions := Versions{"member1": "1234", "member2": "99", "down.example.com": markDown, "refused": markFailed}
	got, err := DecodeVersions(EncodeVersions(versions))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, versions) {
		t.Errorf("versions round trip: got %v, want %v", got, versions)
	}
	c := &Continue{Cluster: "member2", Token: "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ", Versions: versions}
	back, err := DecodeContinue(EncodeContinue(c))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("continue round trip: got %+v, want %+v", back, c)
	}
	if got, err := DecodeVersions(EncodeVersions(nil)); err != nil || len(got) != 0 {
		t.Errorf("empty versions: got %v, %v", got, err)
	}
}

func TestMalformedTokensAreBadRequests(t *testing.T) {
	b64 := func(s string) string { return tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for name, token := range map[string]string{
		"empty":                 "",
		"a member's own":        "12345",
		"no base64":             tokenPrefix + "!!!",
		"no JSON":               b64("not json"),
		"a list, not an object": b64(`["a"]`),
		"unknown field":         b64(`{"c":"a","rv":{},"x":1}`),
		"trailing data":         b64(`{"c":"a","rv":{}} {}`),
		"bad cluster name":      b64(`{"c":"Not_A_Name","rv":{}}`),
		"no versions":           b64(`{"c":"a"}`),
		"empty member version":  b64(`{"c":"a","rv":{"a":""}}`),
		"unknown mark":          b64(`{"c":"a","rv":{"a":"~gone"}}`),
		"bad name in versions":  b64(`{"c":"a","rv":{"UPPER":"1"}}`),
		"too long":              tokenPrefix + strings.Repeat("A", maxTokenBytes*2),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeContinue(token)
			if !apierrors.IsBadRequest(err) {
				t.Fatalf("DecodeContinue: got %v, want a 400", err)
			}
			if !strings.Contains(err.Error(), "continue token") {
				t.Errorf("the message %q does not say what is wrong", err)
			}
		})
	}
	for _, rv := range []string{"", "123", tokenPrefix + "%%", tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(`{"a":1}`))} {
		if _, err := DecodeVersions(rv); !apierrors.IsBadRequest(err) {
			t.Errorf("DecodeVersions(%q): got %v, want a 400", rv, err)
		}
	}
}

// FuzzDecodeContinue: whatever a client sends as a continue token or a
// resourceVersion, the answer is a token that encodes back to itself, or a
// 400, and never a panic.
func FuzzDecodeContinue(f *testing.F) {
	f.Add(EncodeContinue(&Continue{Cluster: "a", Token: "t", Versions: Versions{"a": "1", "b": markDown}}))
	f.Add(EncodeVersions(Versions{"a": "1"}))
	f.Add(tokenPrefix + "e30")
	f.Add("12")
	f.Fuzz(func(t *testing.T, token string) {
		if c, err := DecodeContinue(token); err != nil {
			if status, ok := err.(apierrors.APIStatus); !ok || status.Status().Code != http.StatusBadRequest {
				t.Fatalf("DecodeContinue(%q): %v is not a 400", token, err)
			}
		} else if again, err := DecodeContinue(EncodeContinue(c)); err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("DecodeContinue(%q) = %+v does not round-trip: %+v, %v", token, c, again, err)
		}
		if v, err := DecodeVersions(token); err != nil {
			if status, ok := err.(apierrors.APIStatus); !ok || status.Status().Code != http.StatusBadRequest {
				t.Fatalf("DecodeVersions(%q): %v is not a 400", token, err)
			}
		} else if again, err := DecodeVersions(EncodeVersions(v)); err != nil || !reflect.DeepEqual(again, v) {
			t.Fatalf("DecodeVersions(%q) = %v does not round-trip: %v, %v", token, v, again, err)
		}
	})
}
