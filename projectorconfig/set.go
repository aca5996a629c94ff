package projectorconfig

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Set holds the values of a group of Vars: what flags set, else the
// environment, else the defaults. Its zero value is not usable; see NewSet.
// A Set is not safe for concurrent use while flags are parsed.
type Set struct {
	entries   []*entry
	byEnv     map[string]*entry
	flags     map[string]bool
	lookupEnv func(string) (string, bool)
}

type entry struct {
	Var
	flagValue string
	flagName  string // the name it was given by, "" if no flag set it
}

// NewSet returns a Set of vars, reading the environment with os.LookupEnv.
// It panics when two vars share an environment variable or a flag name: the
// table is code, not input.
func NewSet(vars ...Var) *Set {
	s := &Set{byEnv: map[string]*entry{}, flags: map[string]bool{}, lookupEnv: os.LookupEnv}
	s.Add(vars...)
	return s
}

// Add adds vars, e.g. a program's own settings, with the same rules.
func (s *Set) Add(vars ...Var) {
	for _, v := range vars {
		if v.Env == "" || v.Flag == "" {
			panic(fmt.Sprintf("projectorconfig: Var %+v needs Env and Flag", v))
		}
		if s.byEnv[v.Env] != nil {
			panic("projectorconfig: " + v.Env + " added twice")
		}
		for _, name := range append([]string{v.Flag}, v.Aliases...) {
			if s.flags[name] {
				panic("projectorconfig: flag -" + name + " added twice")
			}
			s.flags[name] = true
		}
		v.Aliases = append([]string(nil), v.Aliases...)
		e := &entry{Var: v}
		s.entries = append(s.entries, e)
		s.byEnv[v.Env] = e
	}
}

// SetLookupEnv replaces os.LookupEnv, for tests.
func (s *Set) SetLookupEnv(lookup func(string) (string, bool)) { s.lookupEnv = lookup }

// SetDefault changes v's default in this Set (a program's topic, its
// projection's name). It panics when v is not in the Set.
func (s *Set) SetDefault(v Var, def string) { s.entry(v).Default = def }

// Has reports whether v is in the Set.
func (s *Set) Has(v Var) bool { return s.byEnv[v.Env] != nil }

// Vars returns the Set's vars, in the order they were added, with the
// defaults set by SetDefault.
func (s *Set) Vars() []Var {
	out := make([]Var, len(s.entries))
	for i, e := range s.entries {
		out[i] = e.Var
	}
	return out
}

func (s *Set) entry(v Var) *entry {
	e := s.byEnv[v.Env]
	if e == nil {
		panic("projectorconfig: " + v.Env + " is not in the Set")
	}
	return e
}

// raw returns v's value and where it came from: "-flag", the variable's
// name, or "" for the default.
func (s *Set) raw(e *entry) (val, source string) {
	if e.flagName != "" {
		return e.flagValue, "-" + e.flagName
	}
	if v, ok := s.lookupEnv(e.Env); ok && v != "" {
		return v, e.Env
	}
	return e.Default, ""
}

// IsSet reports whether v was given, by a flag or a non-empty variable.
func (s *Set) IsSet(v Var) bool {
	_, source := s.raw(s.entry(v))
	return source != ""
}

// Source says where v's value comes from: "-flag", "PROJECTOR_X" or
// "default".
func (s *Set) Source(v Var) string {
	if _, source := s.raw(s.entry(v)); source != "" {
		return source
	}
	return "default"
}

// String returns v's value as given (for any Kind). Do not print it for a
// secret or a URL; see Display.
func (s *Set) String(v Var) string {
	val, _ := s.raw(s.entry(v))
	return strings.TrimSpace(val)
}

// Display returns v's value fit to print: a secret, or a URL with a
// password, as "(from SOURCE)".
func (s *Set) Display(v Var) string {
	e := s.entry(v)
	val, source := s.raw(e)
	return display(e.Var, val, source)
}

func display(v Var, val, source string) string {
	if val == "" || !hidden(v, val) {
		return val
	}
	if source == "" {
		source = "default"
	}
	return "(from " + source + ")"
}

// hidden reports whether val must not be shown.
func hidden(v Var, val string) bool {
	if v.Secret {
		return true
	}
	if v.Kind == URL {
		return urlHasPassword(val)
	}
	return false
}

func urlHasPassword(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		// Unparsable: it might hold a password in a form url cannot read.
		return strings.Contains(raw, "@")
	}
	if u.User == nil {
		return false
	}
	_, has := u.User.Password()
	return has
}

// Invalid returns the error for v's current value: it names the flag or
// variable it came from and what was wanted, and shows the value unless it
// is secret. Programs use it for their own checks (a positive number) so
// that every error reads the same.
func (s *Set) Invalid(v Var, want string) error {
	e := s.entry(v)
	val, source := s.raw(e)
	return invalid(e.Var, val, source, want)
}

func invalid(v Var, val, source, want string) error {
	shown := strconv.Quote(val)
	if hidden(v, val) {
		shown = "(value hidden)"
	}
	switch {
	case strings.HasPrefix(source, "-"):
		return &Error{Name: source, Env: v.Env, Value: shown, Want: want}
	case source != "":
		return &Error{Name: source, Value: shown, Want: want}
	default:
		return &Error{Name: "default of " + v.Env, Value: shown, Want: want}
	}
}

// Error is an invalid setting.
type Error struct {
	// Name is where the value came from: "-flag", "PROJECTOR_X" or
	// "default of PROJECTOR_X".
	Name string
	// Env is the variable of a flag, for the message.
	Env string
	// Value is the quoted value, or "(value hidden)" for a secret.
	Value string
	Want  string
}

func (e *Error) Error() string {
	if e.Env != "" {
		return fmt.Sprintf("%s %s (%s): want %s", e.Name, e.Value, e.Env, e.Want)
	}
	return fmt.Sprintf("%s=%s: want %s", e.Name, e.Value, e.Want)
}

// Bool returns v's value parsed by ParseBool.
func (s *Set) Bool(v Var) (bool, error) {
	e := s.entry(v)
	val, source := s.raw(e)
	b, err := ParseBool(val)
	if err != nil {
		return false, invalid(e.Var, val, source, boolWant)
	}
	return b, nil
}

// Int returns v's value as a decimal integer.
func (s *Set) Int(v Var) (int, error) {
	e := s.entry(v)
	val, source := s.raw(e)
	n, err := strconv.Atoi(strings.TrimSpace(val))
	if err != nil {
		return 0, invalid(e.Var, val, source, "an integer")
	}
	return n, nil
}

// Duration returns v's value parsed by time.ParseDuration.
func (s *Set) Duration(v Var) (time.Duration, error) {
	e := s.entry(v)
	val, source := s.raw(e)
	d, err := time.ParseDuration(strings.TrimSpace(val))
	if err != nil {
		return 0, invalid(e.Var, val, source, "a duration such as 30s or 2m")
	}
	return d, nil
}

// List returns v's value split at commas, blanks trimmed, empty items
// dropped.
func (s *Set) List(v Var) []string {
	var out []string
	for _, item := range strings.Split(s.String(v), ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

const boolWant = "true or false (also yes/no, on/off, 1/0)"

// ParseBool parses a boolean setting: strconv.ParseBool's 1, t, T, TRUE,
// true, True, 0, f, F, FALSE, false, False, plus yes, no, on and off, in
// any case, blanks around ignored. Anything else, the empty string
// included, is an error.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "yes", "on":
		return true, nil
	case "0", "f", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("projectorconfig: %q is not a boolean: want %s", s, boolWant)
}

// Flag is one flag of a Set, for binding to a flag package other than
// the standard library's (pflag, for cobra).
type Flag struct {
	Name  string
	Usage string
	// Value implements flag.Value, pflag.Value (Type) and IsBoolFlag.
	Value Value
	// Bool flags take no argument: for pflag set NoOptDefVal to "true".
	Bool bool
	// Secret flags are a password's: bind them only when the program must
	// accept one on the command line.
	Secret bool
	// AliasOf is the flag this one is an older name of, "" for the flag
	// itself.
	AliasOf string
}

// Value is a flag's value: setting it records the flag's value in the Set;
// String shows the effective default in help (hidden for secrets).
type Value interface {
	String() string
	Set(string) error
	Type() string
	IsBoolFlag() bool
}

type value struct {
	s    *Set
	e    *entry
	name string
}

// String is what help shows as the default: the variable's value if set,
// else the default; "(from PROJECTOR_X)" for a secret. Zero value: "".
func (v *value) String() string {
	if v == nil || v.e == nil {
		return ""
	}
	val, source := v.s.raw(v.e)
	return display(v.e.Var, val, source)
}

func (v *value) Set(val string) error {
	v.e.flagValue, v.e.flagName = val, v.name
	return nil
}

func (v *value) Type() string {
	if v == nil || v.e == nil {
		return "string"
	}
	switch v.e.Kind {
	case Bool:
		return "bool"
	case Int:
		return "int"
	case Duration:
		return "duration"
	case List:
		return "strings"
	}
	return "string"
}

func (v *value) IsBoolFlag() bool { return v != nil && v.e != nil && v.e.Kind == Bool }

// Flags returns a flag per Var and alias, secrets included (marked), for
// binding to pflag (see the package documentation). Values are validated
// when read (Config, Bool, Int...), not when set, so that every problem is
// reported at once.
func (s *Set) Flags() []Flag {
	var out []Flag
	for _, e := range s.entries {
		usage := e.Help + " (" + e.Env + ")"
		out = append(out, Flag{Name: e.Flag, Usage: usage, Value: &value{s: s, e: e, name: e.Flag}, Bool: e.Kind == Bool, Secret: e.Secret})
		for _, a := range e.Aliases {
			out = append(out, Flag{Name: a, Usage: "old name of -" + e.Flag, Value: &value{s: s, e: e, name: a}, Bool: e.Kind == Bool, Secret: e.Secret, AliasOf: e.Flag})
		}
	}
	return out
}

// Bind defines the Set's flags on fs, except the secrets': passwords come
// from their variables only, so that they show neither in the process list
// nor in -h.
func (s *Set) Bind(fs *flag.FlagSet) { s.bind(fs, false) }

// BindAll defines every flag on fs, the secrets' included.
func (s *Set) BindAll(fs *flag.FlagSet) { s.bind(fs, true) }

func (s *Set) bind(fs *flag.FlagSet, secrets bool) {
	for _, f := range s.Flags() {
		if f.Secret && !secrets {
			continue
		}
		fs.Var(f.Value, f.Name, f.Usage)
	}
}
