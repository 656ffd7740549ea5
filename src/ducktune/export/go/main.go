// Renders an Ollama TEMPLATE with Go's own text/template, the way Ollama does for chat
// requests, so ducktune can compare the result byte for byte with the Hugging Face chat
// template. Standard library only (built offline with GOPROXY=off).
//
// Input (stdin, JSON):  {"template": "...", "system": "...", "conversations": [[{"role": "...", "content": "..."}]]}
// Output (stdout, JSON): {"renders": ["...", ...]} or {"error": "..."}
//
// What is mirrored from Ollama's server: the template is parsed with missingkey=zero and a
// "json" function; a Modelfile SYSTEM is prepended as a system message when a conversation
// does not start with one; consecutive messages of one role are merged with "\n\n"; .System
// holds every system message joined with "\n\n"; .Messages, .Tools, .Response ("") and .Think
// are passed as for a chat request.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

// Message mirrors the fields of Ollama's api.Message that templates read.
type Message struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	Thinking  string `json:"thinking,omitempty"`
	ToolName  string `json:"tool_name,omitempty"`
	ToolCalls []any  `json:"tool_calls,omitempty"`
	Images    []any  `json:"images,omitempty"`
}

type request struct {
	Template      string      `json:"template"`
	System        string      `json:"system"`
	Conversations [][]Message `json:"conversations"`
}

type response struct {
	Renders []string `json:"renders,omitempty"`
	Error   string   `json:"error,omitempty"`
}

var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
}

// collate merges consecutive same-role messages and gathers the system messages.
func collate(msgs []Message) (string, []*Message) {
	var system []string
	var out []*Message
	for i := range msgs {
		m := msgs[i]
		if m.Role == "system" {
			system = append(system, m.Content)
		}
		if len(out) > 0 && out[len(out)-1].Role == m.Role && m.Role != "tool" {
			out[len(out)-1].Content += "\n\n" + m.Content
		} else {
			out = append(out, &m)
		}
	}
	return strings.Join(system, "\n\n"), out
}

func render(tmpl *template.Template, system string, msgs []Message) (string, error) {
	if system != "" && (len(msgs) == 0 || msgs[0].Role != "system") {
		msgs = append([]Message{{Role: "system", Content: system}}, msgs...)
	}
	sys, collated := collate(msgs)
	var b bytes.Buffer
	err := tmpl.Execute(&b, map[string]any{
		"System":     sys,
		"Messages":   collated,
		"Tools":      nil,
		"Response":   "",
		"Think":      false,
		"IsThinkSet": false,
	})
	return b.String(), err
}

func fail(format string, args ...any) {
	json.NewEncoder(os.Stdout).Encode(response{Error: fmt.Sprintf(format, args...)})
	os.Exit(1)
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail("reading the request: %v", err)
	}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(req.Template)
	if err != nil {
		fail("parsing the template: %v", err)
	}
	var out response
	for i, conv := range req.Conversations {
		text, err := render(tmpl, req.System, conv)
		if err != nil {
			fail("conversation %d: %v", i+1, err)
		}
		out.Renders = append(out.Renders, text)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		fail("writing the result: %v", err)
	}
}
