// Package setting holds the one error type for a setting that cannot be
// used: config.Load returns it for a value it cannot parse, and the
// packages' own Validate methods (store.Config, api.Config) for rules
// that span several of their settings, so that main can tell a bad
// setting (exit status 2) from a failure at run time.
package setting

import "fmt"

// Error reports a setting that cannot be used. Its message always starts
// with the variable's name so that an operator knows what to fix. Value is
// left empty for secrets.
type Error struct {
	Var    string
	Value  string
	Reason string
}

func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Var, e.Reason)
	}
	return fmt.Sprintf("%s=%q: %s", e.Var, e.Value, e.Reason)
}
