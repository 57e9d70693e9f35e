package awsfake

import (
	"encoding/xml"
	"io"
	"net/http"
	"strings"
)

func ioCopy(w io.Writer, resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}

func xmlUnmarshal(s string, v any) error { return xml.NewDecoder(strings.NewReader(s)).Decode(v) }
