package aggregate

import (
	"sync"
	"time"
)

// workers is a protoactor dispatcher that runs mailbox batches on reusable
// goroutines. protoactor's default dispatcher starts a fresh goroutine for
// every batch; an aggregate's batch goes deep (handler, codec, store,
// driver), so each fresh 8 KiB stack grows by copying, which cost about a
// seventh of the CPU of a command. Workers keep their grown stacks, and one
// idle for longer than idle exits.
type workers struct {
	work chan func() // unbuffered: a send succeeds only when a worker waits
	idle time.Duration
	wg   sync.WaitGroup
	stop chan struct{}
	once sync.Once
}

func newWorkers(idle time.Duration) *workers {
	return &workers{work: make(chan func()), idle: idle, stop: make(chan struct{})}
}

// Schedule implements protoactor's Dispatcher.
func (w *workers) Schedule(fn func()) {
	select {
	case w.work <- fn:
	default:
		w.wg.Add(1)
		go w.run(fn)
	}
}

// Throughput implements protoactor's Dispatcher: messages per batch.
func (w *workers) Throughput() int { return 300 }

func (w *workers) run(fn func()) {
	defer w.wg.Done()
	timer := time.NewTimer(w.idle)
	defer timer.Stop()
	for {
		fn()
		timer.Reset(w.idle)
		select {
		case fn = <-w.work:
		case <-timer.C:
			return
		case <-w.stop:
			return
		}
	}
}

// close ends the idle workers and waits for all of them; busy ones finish
// their batch first. Nothing may be scheduled afterwards.
func (w *workers) close() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}
