package main

import "testing"

func TestMoneyPrints(t *testing.T) {
	for m, want := range map[Money]string{0: "0.00", 5: "0.05", 100_00: "100.00", 12_34: "12.34", -1_50: "-1.50"} {
		if got := m.String(); got != want {
			t.Errorf("Money(%d) = %q, want %q", int64(m), got, want)
		}
	}
}
