package mabis

import "fmt"

// MaLoIDLength is the length of a MaLo-ID: ten digits and a check digit.
const MaLoIDLength = 11

// EICLength is the length of an Energy Identification Code.
const EICLength = 16

// MaLoCheckDigit returns the check digit of the first ten digits of a
// MaLo-ID: with the digits numbered 1 to 10 from the left,
// (10 − (sum of odd-position digits + 2 × sum of even-position digits) mod 10) mod 10.
func MaLoCheckDigit(first10 string) (byte, error) {
	if len(first10) != MaLoIDLength-1 {
		return 0, &InvalidIDError{Kind: ErrInvalidMaLoID, ID: first10, Reason: fmt.Sprintf("want %d digits before the check digit, got %d characters", MaLoIDLength-1, len(first10))}
	}
	odd, even := 0, 0
	for i := range len(first10) {
		c := first10[i]
		if c < '0' || c > '9' {
			return 0, &InvalidIDError{Kind: ErrInvalidMaLoID, ID: first10, Reason: fmt.Sprintf("character %d is %q, not a digit", i+1, c)}
		}
		if i%2 == 0 { // position i+1 is odd
			odd += int(c - '0')
		} else {
			even += int(c - '0')
		}
	}
	return byte('0' + (10-(odd+2*even)%10)%10), nil
}

// ValidateMaLoID reports whether id is a MaLo-ID: 11 digits, not starting
// with 0, whose last digit is the check digit of the first ten (see
// [MaLoCheckDigit]). The error is an *InvalidIDError.
func ValidateMaLoID(id string) error {
	if len(id) != MaLoIDLength {
		return &InvalidIDError{Kind: ErrInvalidMaLoID, ID: id, Reason: fmt.Sprintf("want %d digits, got %d characters", MaLoIDLength, len(id))}
	}
	if id[0] == '0' {
		return &InvalidIDError{Kind: ErrInvalidMaLoID, ID: id, Reason: "must not start with 0"}
	}
	want, err := MaLoCheckDigit(id[:MaLoIDLength-1])
	if err != nil {
		err.(*InvalidIDError).ID = id
		return err
	}
	if c := id[MaLoIDLength-1]; c != want {
		if c < '0' || c > '9' {
			return &InvalidIDError{Kind: ErrInvalidMaLoID, ID: id, Reason: fmt.Sprintf("check digit %q is not a digit", c)}
		}
		return &InvalidIDError{Kind: ErrInvalidMaLoID, ID: id, Reason: fmt.Sprintf("check digit is %c, want %c", c, want)}
	}
	return nil
}

// eicValue maps an EIC character to its value: 0-9 to 0-9, A-Z to 10-35,
// '-' to 36; anything else to -1.
func eicValue(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	case c == '-':
		return 36
	}
	return -1
}

// EICCheckChar returns the check character of the first 15 characters of an
// EIC, as ENTSO-E defines it: the characters' values (0-9, A-Z = 10-35,
// '-' = 36) weighted 16, 15, ..., 2 from the left and summed; the check
// value is 36 − ((sum − 1) mod 37), written as 0-9, A-Z or '-' for 36.
func EICCheckChar(first15 string) (byte, error) {
	if len(first15) != EICLength-1 {
		return 0, &InvalidIDError{Kind: ErrInvalidEIC, ID: first15, Reason: fmt.Sprintf("want %d characters before the check character, got %d", EICLength-1, len(first15))}
	}
	sum := 0
	for i := range len(first15) {
		v := eicValue(first15[i])
		if v < 0 {
			return 0, &InvalidIDError{Kind: ErrInvalidEIC, ID: first15, Reason: fmt.Sprintf("character %d is %q: only 0-9, A-Z and '-' are allowed", i+1, first15[i])}
		}
		sum += v * (EICLength - i)
	}
	check := 36 - (sum-1)%37
	switch {
	case check < 10:
		return byte('0' + check), nil
	case check < 36:
		return byte('A' + check - 10), nil
	}
	return '-', nil
}

// ValidateEIC reports whether code is an Energy Identification Code:
// 16 characters from 0-9, A-Z and '-', the last being the check character
// of the first 15 (see [EICCheckChar]). Balance groups are identified by
// their EIC. The error is an *InvalidIDError.
func ValidateEIC(code string) error {
	if len(code) != EICLength {
		return &InvalidIDError{Kind: ErrInvalidEIC, ID: code, Reason: fmt.Sprintf("want %d characters, got %d", EICLength, len(code))}
	}
	want, err := EICCheckChar(code[:EICLength-1])
	if err != nil {
		err.(*InvalidIDError).ID = code
		return err
	}
	if c := code[EICLength-1]; c != want {
		return &InvalidIDError{Kind: ErrInvalidEIC, ID: code, Reason: fmt.Sprintf("check character is %q, want %q", c, want)}
	}
	return nil
}

// ValidateMarketPartnerID reports whether id is shaped like a BDEW code
// number (BDEW-Codenummer) of a market partner such as a supplier:
// 13 digits. The code's own check digit is not verified here.
func ValidateMarketPartnerID(id string) error {
	if len(id) != 13 {
		return &InvalidIDError{Kind: ErrInvalidMarketPartnerID, ID: id, Reason: fmt.Sprintf("want 13 digits, got %d characters", len(id))}
	}
	for i := range len(id) {
		if id[i] < '0' || id[i] > '9' {
			return &InvalidIDError{Kind: ErrInvalidMarketPartnerID, ID: id, Reason: fmt.Sprintf("character %d is %q, not a digit", i+1, id[i])}
		}
	}
	return nil
}
