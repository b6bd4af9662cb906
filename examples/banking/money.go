package main

import "fmt"

// Money is an amount in cents, so that sums are exact. It prints as units
// with two decimals.
type Money int64

// String prints m as 12.34.
func (m Money) String() string {
	sign := ""
	if m < 0 {
		sign, m = "-", -m
	}
	return fmt.Sprintf("%s%d.%02d", sign, m/100, m%100)
}
