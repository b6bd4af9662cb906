// Package readahead reads the next page of a feed in the background while
// the caller handles the current one, so that a consumer catching up pays
// for its reads and its handling side by side rather than one after the
// other.
package readahead

// Page is one read ahead. The zero value holds none. The owner — the loop
// that calls Start and Take — must call Wait before it returns, so that no
// read outlives it.
type Page[T any] struct {
	after int64
	done  chan struct{}
	items []T
	err   error
}

// Start reads, with read, the page after position after (waiting first
// for a read still in flight). read runs on a goroutine of its own and
// should end when the owner's context does.
func (p *Page[T]) Start(after int64, read func() ([]T, error)) {
	p.Wait()
	p.after, p.done = after, make(chan struct{})
	go func() {
		defer close(p.done)
		p.items, p.err = read()
	}()
}

// Take returns the page read ahead, waiting for it, if it follows position
// and is full (n items), and forgets it either way. A page that is not
// full — the head of the feed — should be read again after the caller
// took its wake-up hint, so that no append in between is missed.
func (p *Page[T]) Take(position int64, n int) ([]T, bool) {
	if p.done == nil {
		return nil, false
	}
	p.Wait()
	items, ok := p.items, p.err == nil && p.after == position && len(p.items) == n
	p.done, p.items, p.err = nil, nil, nil
	return items, ok
}

// Wait waits for a read in flight, if any.
func (p *Page[T]) Wait() {
	if p.done != nil {
		<-p.done
	}
}
