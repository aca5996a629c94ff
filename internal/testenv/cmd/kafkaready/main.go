// Command kafkaready waits until a Kafka cluster answers metadata requests and prints what it
// announces. scripts/test.sh and scripts/infra.sh run it while the broker boots.
//
//	kafkaready -seeds 127.0.0.1:19092 -timeout 90s
//
// With -sasl it connects over TLS trusting only -ca-file and authenticates with SCRAM
// (SCRAM-SHA-256 or SCRAM-SHA-512); the password is read from the environment variable named
// by -password-env, so that it never appears on a command line:
//
//	kafkaready -seeds 127.0.0.1:19094 -ca-file ca.pem -sasl SCRAM-SHA-512 -user projector -password-env PW
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/projector-dev/projector/internal/testenv/kafkaprobe"
)

func main() {
	seeds := flag.String("seeds", "127.0.0.1:9092", "comma-separated seed brokers")
	timeout := flag.Duration("timeout", 90*time.Second, "how long to wait")
	caFile := flag.String("ca-file", "", "connect with TLS, trusting only the CA certificates in this PEM file")
	mech := flag.String("sasl", "", "SASL mechanism: SCRAM-SHA-256 or SCRAM-SHA-512 (needs -user and -password-env)")
	user := flag.String("user", "", "SCRAM user")
	passwordEnv := flag.String("password-env", "", "environment variable holding the SCRAM password")
	flag.Parse()

	opts, err := secureOpts(*caFile, *mech, *user, *passwordEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaready: %v\n", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	info, err := kafkaprobe.Wait(ctx, strings.Split(*seeds, ","), opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaready: %v\n", err)
		os.Exit(1)
	}
	how := ""
	if *mech != "" {
		how = " (" + *mech + " over TLS)"
	} else if *caFile != "" {
		how = " (TLS)"
	}
	fmt.Printf("kafkaready: %s%s answers after %s: %s\n", *seeds, how, time.Since(start).Round(100*time.Millisecond), info)
}

func secureOpts(caFile, mech, user, passwordEnv string) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	if mech == "" {
		return opts, nil
	}
	if user == "" || passwordEnv == "" || os.Getenv(passwordEnv) == "" {
		return nil, fmt.Errorf("-sasl %s needs -user and -password-env naming a set variable", mech)
	}
	auth := scram.Auth{User: user, Pass: os.Getenv(passwordEnv)}
	var m sasl.Mechanism
	switch mech {
	case "SCRAM-SHA-256":
		m = auth.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		m = auth.AsSha512Mechanism()
	default:
		return nil, fmt.Errorf("unknown -sasl %q: want SCRAM-SHA-256 or SCRAM-SHA-512", mech)
	}
	return append(opts, kgo.SASL(m)), nil
}
