package irvm

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

// Plans written by hand pin down the control flow the planner relies on, laid out as
// OPA's Wasm compiler lays it out: a break of n leaves n+1 blocks; a scan's body sits
// in two labels (next element, end of scan); a not's or a with's body in one.
func TestControlFlow(t *testing.T) {
	const (
		out  ir.Local = 2 // an array the statements append to
		key  ir.Local = 3
		val  ir.Local = 4
		res  ir.Local = 5
		copy ir.Local = 6
		done ir.Local = 7 // set when the first block runs to its end
		rest ir.Local = 8 // set when the block around it does
	)
	// strings: 0 "^term1", 1 "x", 2 "after", 3 "exited", 4 "left too far"
	strs := []string{"^term1", "x", "after", "exited", "left too far"}
	appendStr := func(i int) ir.Stmt {
		return &ir.ArrayAppendStmt{Array: out, Value: ir.Operand{Value: ir.StringIndex(i)}}
	}
	appendVal := &ir.ArrayAppendStmt{Array: out, Value: ir.Operand{Value: val}}
	scanInput := func(body ...ir.Stmt) ir.Stmt {
		return &ir.ScanStmt{Source: ir.Input, Key: key, Value: val, Block: &ir.Block{Stmts: body}}
	}
	for _, tc := range []struct {
		name  string
		input string
		stmts []ir.Stmt // run after out := [], in the plan's first block
		want  string
	}{
		{"a break of 0 in a scan goes on to the next element", `[1, 2, 3]`,
			[]ir.Stmt{scanInput(appendVal, &ir.BreakStmt{Index: 0}), appendStr(2)}, `[1, 2, 3, "after"]`},
		{"an undefined statement in a scan goes on to the next element", `[1, 2, 3]`,
			[]ir.Stmt{scanInput(&ir.EqualStmt{A: ir.Operand{Value: val}, B: ir.Operand{Value: ir.Bool(true)}}, appendVal), appendStr(2)}, `["after"]`},
		{"a break of 1 in a scan ends the scan", `[1, 2, 3]`,
			[]ir.Stmt{scanInput(appendVal, &ir.BreakStmt{Index: 1}), appendStr(2)}, `[1, "after"]`},
		{"a break of 2 in a scan leaves the block around it", `[1, 2, 3]`,
			[]ir.Stmt{scanInput(appendVal, &ir.BreakStmt{Index: 2}), appendStr(2)}, `[1, "exited"]`},
		{"a break of 1 in a block statement leaves the block around it", `[]`,
			[]ir.Stmt{&ir.BlockStmt{Blocks: []*ir.Block{{Stmts: []ir.Stmt{appendStr(1), &ir.BreakStmt{Index: 1}}}, {Stmts: []ir.Stmt{appendStr(1)}}}}, appendStr(2)},
			`["x", "exited"]`},
		{"a break of 0 in a block statement goes on to its next block", `[]`,
			[]ir.Stmt{&ir.BlockStmt{Blocks: []*ir.Block{{Stmts: []ir.Stmt{appendStr(1), &ir.BreakStmt{Index: 0}, appendStr(1)}}, {Stmts: []ir.Stmt{appendStr(1)}}}}, appendStr(2)},
			`["x", "x", "after"]`},
		{"a not whose body runs to its end is undefined", `[]`,
			[]ir.Stmt{&ir.NotStmt{Block: &ir.Block{Stmts: []ir.Stmt{appendStr(1)}}}, appendStr(2)}, `["x", "exited"]`},
		{"a not whose body is undefined goes on", `[]`,
			[]ir.Stmt{&ir.NotStmt{Block: &ir.Block{Stmts: []ir.Stmt{&ir.BreakStmt{Index: 0}}}}, appendStr(2)}, `["after"]`},
		{"a break of 1 in a not leaves the block around it", `[]`,
			[]ir.Stmt{&ir.NotStmt{Block: &ir.Block{Stmts: []ir.Stmt{&ir.BreakStmt{Index: 1}}}}, appendStr(2)}, `["exited"]`},
		{"a with's value is seen in its body, and the local is restored after it", `{"x": 1}`,
			[]ir.Stmt{
				&ir.WithStmt{Local: ir.Input, Path: []int{1}, Value: ir.Operand{Value: ir.StringIndex(2)}, Block: &ir.Block{Stmts: []ir.Stmt{
					&ir.DotStmt{Source: ir.Operand{Value: ir.Input}, Key: ir.Operand{Value: ir.StringIndex(1)}, Target: val}, appendVal}}},
				&ir.DotStmt{Source: ir.Operand{Value: ir.Input}, Key: ir.Operand{Value: ir.StringIndex(1)}, Target: val}, appendVal},
			`["after", 1]`},
		{"a with whose body is undefined leaves the block around it", `{"x": 1}`,
			[]ir.Stmt{&ir.WithStmt{Local: ir.Input, Path: []int{1}, Value: ir.Operand{Value: ir.Bool(true)}, Block: &ir.Block{Stmts: []ir.Stmt{
				&ir.BreakStmt{Index: 0}}}}, appendStr(2)},
			`["exited"]`},
		{"a with does not change the document it was given", `{"x": 1}`,
			[]ir.Stmt{&ir.AssignVarStmt{Source: ir.Operand{Value: ir.Input}, Target: copy},
				&ir.WithStmt{Local: ir.Input, Path: []int{1}, Value: ir.Operand{Value: ir.Bool(true)}, Block: &ir.Block{Stmts: []ir.Stmt{
					&ir.DotStmt{Source: ir.Operand{Value: copy}, Key: ir.Operand{Value: ir.StringIndex(1)}, Target: val}, appendVal}}}},
			`[1]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := append([]ir.Stmt{&ir.MakeArrayStmt{Target: out}}, tc.stmts...)
			// The result is taken in a second block, which the first block's statements
			// cannot leave; a marker tells whether the first block was left early.
			first = append(first, &ir.MakeNumberIntStmt{Value: 1, Target: done})
			second := []ir.Stmt{
				&ir.BlockStmt{Blocks: []*ir.Block{{Stmts: []ir.Stmt{&ir.IsUndefinedStmt{Source: done}, appendStr(3)}}}},
				&ir.BlockStmt{Blocks: []*ir.Block{{Stmts: []ir.Stmt{&ir.IsUndefinedStmt{Source: rest}, appendStr(4)}}}},
				&ir.MakeObjectStmt{Target: res},
				&ir.ObjectInsertStmt{Object: res, Key: ir.Operand{Value: ir.StringIndex(0)}, Value: ir.Operand{Value: out}},
				&ir.ResultSetAddStmt{Value: res},
			}
			policy := &ir.Policy{Static: &ir.Static{}, Plans: &ir.Plans{Plans: []*ir.Plan{{Name: "eval", Blocks: []*ir.Block{
				{Stmts: []ir.Stmt{&ir.BlockStmt{Blocks: []*ir.Block{{Stmts: first}}}, &ir.MakeNumberIntStmt{Value: 1, Target: rest}}},
				{Stmts: second},
			}}}}}
			for _, s := range strs {
				policy.Static.Strings = append(policy.Static.Strings, &ir.StringConst{Value: s})
			}
			q, err := load(policy)
			if err != nil {
				t.Fatal(err)
			}
			input := ast.MustParseTerm(tc.input).Value
			got, ok, err := q.Eval(context.Background(), input)
			if err != nil || !ok {
				t.Fatalf("Eval: %v, defined %v", err, ok)
			}
			if want := ast.MustParseTerm(tc.want).Value; ast.Compare(got, want) != 0 {
				t.Errorf("got %v, want %v", got, want)
			}
			if ast.Compare(input, ast.MustParseTerm(tc.input).Value) != 0 {
				t.Errorf("the input was changed: %v", input)
			}
		})
	}
}
