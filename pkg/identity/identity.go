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

// Package identity compiles and applies a Cluster's identity policy: CEL
// expressions over the hub caller, `user` (username, uid, groups, extra),
// that refuse callers and say which user name, UID, groups and extras the
// member sees, as Kubernetes' structured authentication configuration
// maps claims. It uses k8s.io/apiserver's CEL environment, with its
// runtime cost limit, and checks each expression's estimated cost when
// the Cluster is written.
package identity

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/version"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/apiserver/pkg/cel/lazy"
	"k8s.io/apiserver/pkg/cel/library"
)

// Policy is a Cluster's identity policy, as the API states it.
type Policy struct {
	// Rules must all hold for the hub caller, or the request is refused.
	Rules []Rule
	// Username, UID and Groups are expressions for what the member sees;
	// empty keeps the caller's.
	Username, UID, Groups string
	// Extra, when set, are the only extras the member sees, each from an
	// expression; unset keeps the caller's.
	Extra []Extra
}

// Rule is an expression that must be true for the caller.
type Rule struct {
	Expression string
	// Message is what a refused caller reads.
	Message string
}

// Extra is one extra the member sees: Key with the values of
// ValueExpression.
type Extra struct {
	Key             string
	ValueExpression string
}

// Empty says whether the policy changes nothing.
func (p *Policy) Empty() bool {
	return p == nil || len(p.Rules) == 0 && p.Username == "" && p.UID == "" && p.Groups == "" && len(p.Extra) == 0
}

// Bounds of the hub caller that the estimated cost of an expression
// assumes. A caller beyond them is still mapped: the runtime cost limit,
// not these, stops an expression that runs too long.
const (
	maxGroups       = 1000
	maxExtraKeys    = 100
	maxExtraValues  = 100
	maxStringLength = 1024
)

// CostLimit is the most an expression may cost, estimated when the Cluster
// is written and counted when it runs: the per-expression limit of
// ValidatingAdmissionPolicy.
const CostLimit = celconfig.PerCallLimit

// Program is a compiled policy. It is safe for concurrent use.
type Program struct {
	// refuseAll, when set, refuses every caller with this reason.
	refuseAll             string
	rules                 []compiled
	username, uid, groups *compiled
	extra                 []compiledExtra
}

type compiled struct {
	expression string
	message    string
	program    cel.Program
}

type compiledExtra struct {
	key string
	compiled
}

var (
	stringList = cel.ListType(cel.StringType)
	// envs are the CEL environments of the expressions: Kubernetes' base
	// environment with the caller as `user`, for expressions being written
	// (NewExpressions: only what every API server of this version's
	// compatibility range knows) and for stored ones (StoredExpressions).
	envs     = map[environment.Type]*cel.Env{}
	envsOnce sync.Once
)

func envFor(t environment.Type) *cel.Env {
	envsOnce.Do(func() {
		userType := apiservercel.NewObjectType("kubernetes.UserInfo", map[string]*apiservercel.DeclField{
			"username": apiservercel.NewDeclField("username", apiservercel.StringType, false, nil, nil),
			"uid":      apiservercel.NewDeclField("uid", apiservercel.StringType, false, nil, nil),
			"groups":   apiservercel.NewDeclField("groups", apiservercel.NewListType(apiservercel.StringType, maxGroups), false, nil, nil),
			"extra": apiservercel.NewDeclField("extra", apiservercel.NewMapType(apiservercel.StringType,
				apiservercel.NewListType(apiservercel.StringType, maxExtraValues), maxExtraKeys), false, nil, nil),
		})
		set, err := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()).Extend(environment.VersionedOptions{
			IntroducedVersion: version.MajorMinor(1, 0),
			EnvOptions:        []cel.EnvOption{cel.Variable("user", userType.CelType())},
			DeclTypes:         []*apiservercel.DeclType{userType},
		})
		if err != nil {
			panic(fmt.Sprintf("the identity policy's CEL environment: %v", err))
		}
		for _, t := range []environment.Type{environment.NewExpressions, environment.StoredExpressions} {
			e, err := set.Env(t)
			if err != nil {
				panic(fmt.Sprintf("the identity policy's CEL environment: %v", err))
			}
			envs[t] = e
		}
	})
	return envs[t]
}

// Limits of a policy, so that what one request costs stays bounded.
const (
	maxRules            = 16
	maxExtras           = 16
	maxExpressionLength = 4096
)

// Mode says which CEL environment an expression compiles in.
type Mode = environment.Type

const (
	// NewExpressions is for a policy being written, or changed.
	NewExpressions = environment.NewExpressions
	// StoredExpressions is for a policy already stored: it may use what a
	// newer API server allowed.
	StoredExpressions = environment.StoredExpressions
)

// compilations counts the policies CompileIn compiled.
var compilations atomic.Int64

// Compilations is how many non-empty policies this process compiled: a
// test's proof that requests do not compile them.
func Compilations() int64 { return compilations.Load() }

// Compile compiles every expression of p for a stored policy, and says,
// as errors of the fields under fldPath, which do not compile, give the
// wrong type or may cost too much. A nil or empty policy compiles to nil.
func Compile(p *Policy, fldPath *field.Path) (*Program, field.ErrorList) {
	return CompileIn(StoredExpressions, p, fldPath)
}

// CompileIn is Compile in the environment of mode.
func CompileIn(mode Mode, p *Policy, fldPath *field.Path) (*Program, field.ErrorList) {
	if p.Empty() {
		return nil, nil
	}
	compilations.Add(1)
	env := envFor(mode)
	var errs field.ErrorList
	if len(p.Rules) > maxRules {
		errs = append(errs, field.TooMany(fldPath.Child("rules"), len(p.Rules), maxRules))
	}
	if len(p.Extra) > maxExtras {
		errs = append(errs, field.TooMany(fldPath.Child("extra"), len(p.Extra), maxExtras))
	}
	prog := &Program{}
	for i, r := range p.Rules {
		path := fldPath.Child("rules").Index(i)
		c, err := compile(env, r.Expression, []*cel.Type{cel.BoolType}, path.Child("expression"))
		errs = append(errs, err...)
		if len(r.Message) > maxStringLength {
			errs = append(errs, field.TooLong(path.Child("message"), "", maxStringLength))
		}
		if c != nil {
			c.message = r.Message
			prog.rules = append(prog.rules, *c)
		}
	}
	one := func(expression, name string, want ...*cel.Type) *compiled {
		if expression == "" {
			return nil
		}
		c, err := compile(env, expression, want, fldPath.Child(name))
		errs = append(errs, err...)
		return c
	}
	prog.username = one(p.Username, "username", cel.StringType)
	prog.uid = one(p.UID, "uid", cel.StringType)
	prog.groups = one(p.Groups, "groups", stringList)
	seen := map[string]bool{}
	for i, x := range p.Extra {
		path := fldPath.Child("extra").Index(i)
		switch {
		case x.Key == "":
			errs = append(errs, field.Required(path.Child("key"), "the extra's key"))
		case x.Key != strings.ToLower(x.Key):
			// Kubernetes lowercases extra keys: Foo and foo would merge.
			errs = append(errs, field.Invalid(path.Child("key"), x.Key, "must be lowercase"))
		case len(x.Key) > maxStringLength:
			errs = append(errs, field.TooLong(path.Child("key"), "", maxStringLength))
		case seen[x.Key]:
			errs = append(errs, field.Duplicate(path.Child("key"), x.Key))
		}
		seen[x.Key] = true
		c, err := compile(env, x.ValueExpression, []*cel.Type{stringList, cel.StringType}, path.Child("valueExpression"))
		errs = append(errs, err...)
		if c != nil {
			prog.extra = append(prog.extra, compiledExtra{key: x.Key, compiled: *c})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return prog, nil
}

// compile compiles one expression that must give one of the types want
// (or dyn, checked when it runs).
func compile(env *cel.Env, expression string, want []*cel.Type, path *field.Path) (*compiled, field.ErrorList) {
	if expression == "" {
		return nil, field.ErrorList{field.Required(path, "a CEL expression")}
	}
	if len(expression) > maxExpressionLength {
		return nil, field.ErrorList{field.TooLong(path, "", maxExpressionLength)}
	}
	ast, issues := env.Compile(expression)
	if issues != nil && issues.Err() != nil {
		return nil, field.ErrorList{field.Invalid(path, expression, "does not compile: "+issues.Err().Error())}
	}
	out := ast.OutputType()
	// dyn, and a list of dyn ([] for one), are checked when they run.
	open := out.IsExactType(cel.DynType) || slices.Contains(want, stringList) && out.IsExactType(cel.ListType(cel.DynType))
	if !open && !slices.ContainsFunc(want, out.IsExactType) {
		names := make([]string, len(want))
		for i, w := range want {
			names[i] = w.String()
		}
		return nil, field.ErrorList{field.Invalid(path, expression, fmt.Sprintf("gives %s, must give %v", out, names))}
	}
	estimate, err := env.EstimateCost(ast, &library.CostEstimator{SizeEstimator: callerSizes{}})
	if err != nil {
		return nil, field.ErrorList{field.Invalid(path, expression, "its cost cannot be estimated: "+err.Error())}
	}
	if estimate.Max > CostLimit {
		return nil, field.ErrorList{field.Forbidden(path, fmt.Sprintf(
			"may cost up to %d, more than the limit of %d, for a caller with up to %d groups and %d extras of up to %d values, each up to %d characters long: make it cheaper",
			estimate.Max, CostLimit, maxGroups, maxExtraKeys, maxExtraValues, maxStringLength))}
	}
	// A cancelled request stops its expression within 100 iterations.
	program, err := env.Program(ast, cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, field.ErrorList{field.InternalError(path, err)}
	}
	return &compiled{expression: expression, program: program}, nil
}

// callerSizes gives the cost estimator the sizes of the caller's fields.
type callerSizes struct{}

func (callerSizes) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	path := element.Path()
	if len(path) == 0 || path[0] != "user" {
		return nil
	}
	switch path[len(path)-1] {
	case "groups":
		return &checker.SizeEstimate{Min: 0, Max: maxGroups}
	case "extra":
		return &checker.SizeEstimate{Min: 0, Max: maxExtraKeys}
	}
	return &checker.SizeEstimate{Min: 0, Max: maxStringLength}
}

func (callerSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// Refusal is a request the policy does not let through. Nothing of it
// reaches the member.
type Refusal struct {
	// Rule is the index of the rule that failed, or -1 when a mapping
	// could not be made.
	Rule       int
	Expression string
	// Message is the rule's message, or why the mapping failed.
	Message string
}

// RefusalMessage begins the text of every Refusal.
const RefusalMessage = "its identity policy "

func (r *Refusal) Error() string {
	if r.Rule < 0 && r.Expression == "" {
		return RefusalMessage + "refuses every caller: " + r.Message
	}
	if r.Rule < 0 {
		return fmt.Sprintf(RefusalMessage+"cannot map the caller: %s (expression %s)", r.Message, r.Expression)
	}
	msg := r.Message
	if msg == "" {
		msg = "the caller does not satisfy it"
	}
	return fmt.Sprintf(RefusalMessage+"refuses the caller: rule %d (%s): %s", r.Rule, r.Expression, msg)
}

// Map applies the policy to the hub caller: the identity the member sees,
// or a *Refusal. A nil Program maps every caller to itself.
func (p *Program) Map(ctx context.Context, caller user.Info) (user.Info, error) {
	if p == nil {
		return caller, nil
	}
	if p.refuseAll != "" {
		return nil, &Refusal{Rule: -1, Message: p.refuseAll}
	}
	activation := &callerActivation{user: callerValue(caller)}
	for i, r := range p.rules {
		val, err := r.eval(ctx, activation)
		if err != nil {
			return nil, &Refusal{Rule: i, Expression: r.expression, Message: err.Error()}
		}
		if ok, isBool := val.Value().(bool); !isBool || !ok {
			return nil, &Refusal{Rule: i, Expression: r.expression, Message: r.message}
		}
	}
	out := &user.DefaultInfo{Name: caller.GetName(), UID: caller.GetUID(), Groups: caller.GetGroups(), Extra: caller.GetExtra()}
	var err error
	if p.username != nil {
		if out.Name, err = p.username.evalString(ctx, activation); err == nil && out.Name == "" {
			err = &Refusal{Rule: -1, Expression: p.username.expression, Message: "the user name is empty"}
		}
		if err != nil {
			return nil, err
		}
	}
	if p.uid != nil {
		if out.UID, err = p.uid.evalString(ctx, activation); err != nil {
			return nil, err
		}
	}
	if p.groups != nil {
		if out.Groups, err = p.groups.evalStrings(ctx, activation); err != nil {
			return nil, err
		}
	}
	if p.extra != nil {
		out.Extra = map[string][]string{}
		for _, x := range p.extra {
			values, err := x.evalStrings(ctx, activation)
			if err != nil {
				return nil, err
			}
			if len(values) > 0 {
				out.Extra[x.key] = values
			}
		}
	}
	return out, nil
}

func (c *compiled) eval(ctx context.Context, activation interpreter.Activation) (ref.Val, error) {
	val, _, err := c.program.ContextEval(ctx, activation)
	if err != nil {
		return nil, err
	}
	return val, nil
}

func (c *compiled) evalString(ctx context.Context, activation interpreter.Activation) (string, error) {
	val, err := c.eval(ctx, activation)
	if err != nil {
		return "", &Refusal{Rule: -1, Expression: c.expression, Message: err.Error()}
	}
	s, ok := val.Value().(string)
	if !ok {
		return "", &Refusal{Rule: -1, Expression: c.expression, Message: fmt.Sprintf("it gave %s, not a string", val.Type().TypeName())}
	}
	return s, nil
}

// evalStrings takes a list of strings, or one string as a list of one.
func (c *compiled) evalStrings(ctx context.Context, activation interpreter.Activation) ([]string, error) {
	val, err := c.eval(ctx, activation)
	if err != nil {
		return nil, &Refusal{Rule: -1, Expression: c.expression, Message: err.Error()}
	}
	values, ok := stringsOf(val)
	if !ok {
		return nil, &Refusal{Rule: -1, Expression: c.expression, Message: fmt.Sprintf("it gave %s, not a list of strings", val.Type().TypeName())}
	}
	if slices.Contains(values, "") {
		return nil, &Refusal{Rule: -1, Expression: c.expression, Message: "it gave an empty string"}
	}
	return values, nil
}

// stringsOf is a CEL string, or list of strings, as Go strings. It reads
// the list through CEL's list interface, as ConvertToNative would, without
// reflection.
func stringsOf(val ref.Val) ([]string, bool) {
	if s, ok := val.(types.String); ok {
		return []string{string(s)}, true
	}
	list, ok := val.(traits.Lister)
	if !ok {
		return nil, false
	}
	size, ok := list.Size().(types.Int)
	if !ok || size < 0 {
		return nil, false
	}
	values := make([]string, 0, int(size))
	for it := list.Iterator(); it.HasNext() == types.True; {
		elem := it.Next()
		if s, ok := elem.(types.String); ok {
			values = append(values, string(s))
			continue
		}
		// Kubernetes' own types (an ip, a quantity, a URL) become their text.
		native, err := elem.ConvertToNative(reflect.TypeFor[string]())
		if err != nil {
			return nil, false
		}
		values = append(values, native.(string))
	}
	return values, true
}

// callerActivation resolves the one variable of an expression, `user`.
type callerActivation struct{ user *lazy.MapValue }

func (a *callerActivation) ResolveName(name string) (any, bool) {
	if name == "user" {
		return a.user, true
	}
	return nil, false
}

func (a *callerActivation) Parent() interpreter.Activation { return nil }

var userInfoType = types.NewObjectType("kubernetes.UserInfo")

// callerValue is the caller as CEL's `user`, its fields read only when an
// expression reads them.
func callerValue(caller user.Info) *lazy.MapValue {
	m := lazy.NewMapValue(userInfoType)
	field := func(name string, get func() any) {
		m.Append(name, func(*lazy.MapValue) ref.Val { return types.DefaultTypeAdapter.NativeToValue(get()) })
	}
	field("username", func() any { return caller.GetName() })
	field("uid", func() any { return caller.GetUID() })
	field("groups", func() any { return nonNil(caller.GetGroups()) })
	field("extra", func() any {
		if extra := caller.GetExtra(); extra != nil {
			return extra
		}
		return map[string][]string{}
	})
	return m
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// RefusingAll is a Program that refuses every caller, for reason: what a
// Cluster whose policy does not compile gets, rather than no policy.
func RefusingAll(reason string) *Program { return &Program{refuseAll: reason} }

// IsRefusal says whether err is the policy's refusal.
func IsRefusal(err error) bool {
	var r *Refusal
	return errors.As(err, &r)
}
