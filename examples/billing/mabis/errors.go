package mabis

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidMaLoID reports a MaLo-ID that is not 11 digits with a
	// valid check digit. See [InvalidIDError].
	ErrInvalidMaLoID = errors.New("mabis: invalid MaLo-ID")

	// ErrInvalidEIC reports an Energy Identification Code that is not
	// 16 valid characters with a valid check character. See
	// [InvalidIDError].
	ErrInvalidEIC = errors.New("mabis: invalid EIC")

	// ErrInvalidMarketPartnerID reports a market partner ID that is not a
	// 13-digit BDEW code. See [InvalidIDError].
	ErrInvalidMarketPartnerID = errors.New("mabis: invalid market partner ID")

	// ErrInvalidDate reports a day or month that does not parse or lies
	// outside the range this package handles.
	ErrInvalidDate = errors.New("mabis: invalid date")

	// ErrInvalidPayload reports an event payload that does not decode or
	// does not validate. See [PayloadError].
	ErrInvalidPayload = errors.New("mabis: invalid event payload")

	// ErrInvalidStreamID reports a stream ID that is not
	// "process/{tenant}/{malo}-{YYYY-MM}".
	ErrInvalidStreamID = errors.New("mabis: invalid billing stream ID")

	// ErrUnknownBalanceGroup reports a query for a balance group that has
	// nothing in the read model for the month.
	ErrUnknownBalanceGroup = errors.New("mabis: unknown balance group")

	// ErrUnknownMaLo reports a query for a MaLo that has nothing in the
	// read model for the month.
	ErrUnknownMaLo = errors.New("mabis: unknown MaLo")

	// ErrOldLayout reports a read model written by an older layout of
	// the billing projection (layout 1: hashes of quarter-hour fields),
	// which this version does not read: rebuild the projection
	// (projectorctl rebuild billing) to migrate it. See LayoutVersion.
	ErrOldLayout = errors.New("mabis: the read model was written by billing read-model layout 1; this version reads layout 2: rebuild it (projectorctl rebuild billing) to migrate")

	// ErrMonthClosed reports a query for per-MaLo detail of a month that
	// CloseMonth closed: the detail was dropped, the balance-group series
	// remain. A *MonthClosedError carries when.
	ErrMonthClosed = errors.New("mabis: month closed")

	// ErrInCorrectionWindow reports a CloseMonth of a month still inside
	// its correction window.
	ErrInCorrectionWindow = errors.New("mabis: month still inside its correction window")
)

// InvalidIDError names a rejected identifier and why.
type InvalidIDError struct {
	Kind   error // ErrInvalidMaLoID, ErrInvalidEIC or ErrInvalidMarketPartnerID
	ID     string
	Reason string
}

func (e *InvalidIDError) Error() string {
	return fmt.Sprintf("%v %q: %s", e.Kind, e.ID, e.Reason)
}

// Is reports whether target is the kind of identifier.
func (e *InvalidIDError) Is(target error) bool { return target == e.Kind }

// PayloadError names the event type and the field of a payload at fault.
type PayloadError struct {
	Type  string // the event type
	Field string // the JSON field, with an index where it applies: "wh[17]"
	Err   error
}

func (e *PayloadError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("mabis: %s: %v", e.Type, e.Err)
	}
	return fmt.Sprintf("mabis: %s: %s: %v", e.Type, e.Field, e.Err)
}

// Is reports whether target is ErrInvalidPayload.
func (e *PayloadError) Is(target error) bool { return target == ErrInvalidPayload }

// Unwrap returns the underlying error, such as an *InvalidIDError.
func (e *PayloadError) Unwrap() error { return e.Err }
