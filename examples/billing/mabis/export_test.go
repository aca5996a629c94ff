package mabis

// SetCloseStep makes CloseMonth call f after each of its steps.
func SetCloseStep(f func(step string)) { closeStep = f }
