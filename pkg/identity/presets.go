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

package identity

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Preset is a ready-made policy, from the choices kubectl switchboard
// join offers.
type Preset struct {
	// RefuseHubAdmins refuses hub callers in system:masters.
	RefuseHubAdmins bool
	// Prefix, when set, goes before every hub user name and group: the
	// member's own users and groups can then never be a hub caller's.
	Prefix string
	// AllowGroups, when set, are the only hub groups the member sees;
	// the caller's others are left out.
	AllowGroups []string
}

// RefuseHubAdminsRule is the rule of Preset.RefuseHubAdmins.
var RefuseHubAdminsRule = Rule{
	Expression: "!('system:masters' in user.groups)",
	Message:    "hub callers in system:masters are not administrators of this member",
}

// Policy is the preset as a policy; nil when it sets nothing.
func (p Preset) Policy() (*Policy, error) {
	out := &Policy{}
	if p.RefuseHubAdmins {
		out.Rules = append(out.Rules, RefuseHubAdminsRule)
	}
	groups := "user.groups"
	if len(p.AllowGroups) > 0 {
		quoted := make([]string, len(p.AllowGroups))
		for i, g := range p.AllowGroups {
			if err := literal("group", g); err != nil {
				return nil, err
			}
			quoted[i] = strconv.Quote(g)
		}
		groups += ".filter(g, g in [" + strings.Join(quoted, ", ") + "])"
		out.Groups = groups
	}
	if p.Prefix != "" {
		if err := literal("prefix", p.Prefix); err != nil {
			return nil, err
		}
		out.Username = strconv.Quote(p.Prefix) + " + user.username"
		out.Groups = groups + ".map(g, " + strconv.Quote(p.Prefix) + " + g)"
	}
	if out.Empty() {
		return nil, nil
	}
	return out, nil
}

// literal refuses what cannot be a user name or group: empty, or with
// control characters or surrounding white space, which headers do not
// carry.
func literal(what, s string) error {
	if s == "" || strings.TrimSpace(s) != s || strings.ContainsFunc(s, unicode.IsControl) || !utf8.ValidString(s) {
		return fmt.Errorf("%s %q: must be non-empty UTF-8, with no control characters and no white space around it", what, s)
	}
	return nil
}
