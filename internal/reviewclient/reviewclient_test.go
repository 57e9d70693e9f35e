package reviewclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestPostClassifiesAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		want    Answer
		wantErr string // Kind
	}{
		{"allowed with a patch", 200, `{"response":{"uid":"u1","allowed":true,"patch":"W10="}}`,
			Answer{UID: "u1", Allowed: true, Patch: []byte("[]"), Proto: "HTTP/1.1"}, ""},
		{"denied", 200, `{"response":{"uid":"u2","allowed":false,"status":{"message":"no"}}}`,
			Answer{UID: "u2", Message: "no", Proto: "HTTP/1.1"}, ""},
		{"not a review", 200, `{"kind":"Status"}`, Answer{}, "bad-response"},
		{"server error", 500, "internal error\n", Answer{}, "status-500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
					http.Error(w, "bad request", http.StatusBadRequest)
					return
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			got := Post(context.Background(), srv.Client(), srv.URL, []byte(`{}`))
			if got.Kind != tc.wantErr {
				t.Fatalf("kind %q (%s), want %q", got.Kind, got.Detail, tc.wantErr)
			}
			if tc.wantErr != "" {
				if got.Detail == "" {
					t.Error("no detail")
				}
				return
			}
			if got.UID != tc.want.UID || got.Allowed != tc.want.Allowed || got.Message != tc.want.Message ||
				string(got.Patch) != string(tc.want.Patch) || got.Proto != tc.want.Proto {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	// Nothing listening.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	if got := Post(context.Background(), http.DefaultClient, url, nil); got.Kind != "connection-refused" {
		t.Errorf("kind %q (%s), want connection-refused", got.Kind, got.Detail)
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 1000; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := Summarize(d)
	want := Latencies{P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000, Mean: 500.5}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if d[0] != 1000*time.Millisecond {
		t.Error("Summarize sorted its argument")
	}
	if (Summarize(nil) != Latencies{}) {
		t.Error("empty input gives non-zero latencies")
	}
}
