package testimage

import "net/http"

// PauseWriter passes the first Left bytes of a response on, then calls
// Pause once before the rest: a registry middleware's way to hold a blob
// mid-way (a slow or stalled download) until the test lets it go. Pause
// returning an error ends the response there.
type PauseWriter struct {
	http.ResponseWriter
	Left  int // bytes still to pass before pausing; < 0 once paused
	Pause func() error
}

func (w *PauseWriter) Write(p []byte) (int, error) {
	if w.Left < 0 || len(p) <= w.Left {
		if w.Left >= 0 {
			w.Left -= len(p)
		}
		return w.ResponseWriter.Write(p)
	}
	n, err := w.ResponseWriter.Write(p[:w.Left])
	w.Left = -1
	if err != nil {
		return n, err
	}
	if err := w.Pause(); err != nil {
		return n, err
	}
	m, err := w.ResponseWriter.Write(p[n:])
	return n + m, err
}
