// Package projectorconfig is the one table of the PROJECTOR_* settings that
// Projector's programs share: worker mains built on package worker, the
// billing example, projectorctl. Each setting ([Var]) has one environment
// variable, one flag name, one default and one help text, so a variable
// means the same in every program and a Helm chart or a shell profile
// configures all of them at once.
//
// # Precedence
//
// A flag given on the command line wins over the environment variable, and
// a variable that is set and not empty wins over the default (an empty
// variable counts as unset, so a chart may render one empty).
//
// # Booleans
//
// One syntax everywhere ([ParseBool]): strconv.ParseBool's 1, t, true, 0, f,
// false, plus yes, no, on, off, any case. Anything else is an error that
// names the variable or flag it came from; it is never read as false.
//
// # Secrets
//
// A secret [Var] (a password) never shows its value: not as a flag default
// in -h (which says "(from PROJECTOR_X)" instead), not in an error. A URL
// ([URL] kind) that carries a password is treated the same way. The
// password variables are read from the environment only, unless a program
// binds their flags explicitly with [Set.BindAll] (a flag shows in the
// process list).
//
// # Use
//
//	set := projectorconfig.NewSet(projectorconfig.Worker()...)
//	set.SetDefault(projectorconfig.Topic, "orders")
//	fs := flag.NewFlagSet("orders-worker", flag.ContinueOnError)
//	set.Bind(fs)
//	if err := fs.Parse(os.Args[1:]); err != nil { ... }
//	cfg, err := set.Config() // typed, validated; every problem at once
//
// A cobra command (pflag) binds the same table through [Set.Flags]:
//
//	for _, f := range set.Flags() {
//		if f.Secret && !wantSecretFlags {
//			continue
//		}
//		pf := cmd.PersistentFlags().VarPF(f.Value, f.Name, "", f.Usage)
//		if f.Bool {
//			pf.NoOptDefVal = "true" // --kafka-tls alone means true
//		}
//	}
package projectorconfig
