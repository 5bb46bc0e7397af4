package servicetest

import (
	"bufio"
	"io"
	"strings"
)

// Event is one Server-Sent Event as a client reads it, or a comment line
// (a heartbeat), which has only Comment.
type Event struct {
	Name, ID, Data string
	Comment        string
}

// ReadEvents reads a stream's events and comments from r into out, in
// order, until r ends; then it closes out.
func ReadEvents(r io.Reader, out chan<- Event) {
	defer close(out)
	br := bufio.NewReader(r)
	var ev Event
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.Name != "" || ev.Data != "" {
				out <- ev
			}
			ev = Event{}
		case strings.HasPrefix(line, ":"):
			out <- Event{Comment: strings.TrimSpace(line[1:])}
		case strings.HasPrefix(line, "event: "):
			ev.Name = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			ev.ID = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			ev.Data = line[len("data: "):]
		}
	}
}
