package compose

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"text/template"
	"text/template/parse"
)

// Init templates come from whoever may write a LayerSet and run inside the
// node plugin, and text/template cannot be stopped once Execute runs. So a
// template's work is bounded by construction, before it runs:
//
//   - Loops. The data (PodInfo) holds only strings and the functions return
//     strings, bools and small integers, so the only values a range can
//     iterate over are integers. A range must therefore name an integer
//     constant ({{range 3}}), which makes its count known before execution;
//     a range over a computed value ({{range len .PodName}}) is refused,
//     since nothing a pod template needs is counted at run time. All ranges
//     of one volume's templates, nested ones multiplied out, may iterate at
//     most maxRangeIterations times.
//   - Calls. {{template}} calls are expanded when counting, and a template
//     that calls itself, directly or through others, is refused.
//   - Everything else runs at most once per enclosing iteration or call, so
//     counting the parse nodes gives an upper bound of the actions executed,
//     which is held to maxTemplateSteps per volume.
//   - Functions. The builtins that build or scan strings (printf, print,
//     println, html, js, urlquery and the comparisons) are replaced by
//     versions with the same behaviour that first bound their result and
//     then charge it, and the bytes they compare, to maxTemplateWorkBytes
//     per volume; they fail, and so stop Execute, once that is spent or ctx
//     is done. The others (and, or, not, len, index, slice, call) take
//     constant time.
//   - Output goes through limitedWriter: maxInitFileBytes a file,
//     maxInitTotalBytes a volume, and ctx.
const (
	// maxRangeIterations bounds the iterations of all ranges of one
	// volume's init templates: a few hundred lines generated from a
	// counter are plausible, millions are not.
	maxRangeIterations = 10000
	// maxTemplateSteps bounds the parse nodes executed by one volume's
	// init templates, loops and calls multiplied out. A node costs at
	// most a few hundred nanoseconds (the costliest templates at this
	// limit, of len, slice, index and printf calls, render in about
	// 0.3 s), far below a CSI call's deadline, while a 1 MiB template with
	// ten thousand substitutions is some forty thousand nodes.
	maxTemplateSteps = 1_000_000
	// maxTemplateWorkBytes bounds the bytes the string functions of one
	// volume's init templates produce or compare, and so the memory they
	// take: twice what the init files may hold in all, since what printf
	// produces is mostly output too, and its estimates are generous.
	maxTemplateWorkBytes = 2 * maxInitTotalBytes
	// maxFuncResultBytes bounds the estimated result of one string
	// function call; estimates run up to five times the real size.
	maxFuncResultBytes = 4 * maxInitFileBytes
)

// renderBudget is what is left to one volume's init templates.
type renderBudget struct {
	ctx        context.Context
	steps      int64
	iterations int64
	work       int64
}

func newRenderBudget(ctx context.Context) *renderBudget {
	return &renderBudget{ctx: ctx, steps: maxTemplateSteps, iterations: maxRangeIterations, work: maxTemplateWorkBytes}
}

// parseTemplate parses one init template, checks that its work is bounded
// and charges that work to b; the template's functions charge b.
func (b *renderBudget) parseTemplate(name, text string) (*template.Template, error) {
	p, err := parseInit(name, text)
	if err != nil {
		return nil, err
	}
	if err := b.admit(p.cost); err != nil {
		return nil, err
	}
	p.slot.b = b
	return p.t, nil
}

// parsed is an init template, parsed and costed. Its functions charge the
// budget in its slot, so one execution at a time may run it.
type parsed struct {
	t    *template.Template
	slot *budgetSlot
	cost cost
}

// parseInit parses one init template and computes what executing it costs at
// most.
func parseInit(name, text string) (*parsed, error) {
	slot := &budgetSlot{}
	t, err := template.New(name).Option("missingkey=error").Funcs(slot.funcs()).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	c := coster{t: t, memo: map[string]cost{}, active: map[string]bool{}}
	total, err := c.template(t.Name(), t.Tree)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	return &parsed{t: t, slot: slot, cost: total}, nil
}

// clone returns a copy of p with a slot of its own, for an execution
// beside p's. The parse trees are shared: executing never changes them.
func (p *parsed) clone() (*parsed, error) {
	t, err := p.t.Clone()
	if err != nil {
		return nil, err
	}
	slot := &budgetSlot{}
	return &parsed{t: t.Funcs(slot.funcs()), slot: slot, cost: p.cost}, nil
}

// execute runs the template on pod into w, its functions charging b.
func (p *parsed) execute(b *renderBudget, w io.Writer, pod PodInfo) error {
	p.slot.b = b
	defer func() { p.slot.b = nil }()
	return p.t.Execute(w, pod)
}

// admit charges b with a template's cost, refusing one that does not fit
// in what is left.
func (b *renderBudget) admit(total cost) error {
	if total.iterations > b.iterations {
		return fmt.Errorf("%w: the template's ranges iterate up to %s times, nested ones multiplied out; the init templates of one volume may iterate %d times in all, %d of them left",
			ErrInvalidSpec, atLeast(total.iterations), maxRangeIterations, b.iterations)
	}
	if total.steps > b.steps {
		return fmt.Errorf("%w: the template may execute up to %s template actions, loops and {{template}} calls multiplied out; the init templates of one volume may execute %d in all, %d of them left",
			ErrInvalidSpec, atLeast(total.steps), maxTemplateSteps, b.steps)
	}
	b.iterations -= total.iterations
	b.steps -= total.steps
	return nil
}

// atLeast prints a saturated count.
func atLeast(n int64) string {
	if n >= saturated {
		return fmt.Sprintf("more than %d", int64(maxTemplateSteps))
	}
	return fmt.Sprint(n)
}

// saturated is where cost arithmetic stops counting: above every limit,
// far from overflow.
const saturated = int64(1) << 40

func add(a, b int64) int64 { return min(a+b, saturated) }

func mul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > saturated/b {
		return saturated
	}
	return min(a*b, saturated)
}

// cost is an upper bound of what executing a node does.
type cost struct {
	steps      int64 // parse nodes evaluated
	iterations int64 // range iterations
}

func (c cost) plus(d cost) cost {
	return cost{add(c.steps, d.steps), add(c.iterations, d.iterations)}
}

func (c cost) times(n int64) cost {
	return cost{mul(c.steps, n), mul(c.iterations, n)}
}

// coster computes the cost of one template and the ones it calls.
type coster struct {
	t      *template.Template
	memo   map[string]cost
	active map[string]bool
	stack  []string
}

func (c *coster) template(name string, tree *parse.Tree) (cost, error) {
	if k, ok := c.memo[name]; ok {
		return k, nil
	}
	if c.active[name] {
		chain := append(c.stack[indexOf(c.stack, name):], name)
		return cost{}, fmt.Errorf("template %q calls itself (%s); recursive templates are not allowed",
			name, strings.Join(quoteAll(chain), " -> "))
	}
	if tree == nil || tree.Root == nil {
		return cost{steps: 1}, nil
	}
	c.active[name] = true
	c.stack = append(c.stack, name)
	k, err := c.node(tree.Root)
	c.stack = c.stack[:len(c.stack)-1]
	delete(c.active, name)
	if err != nil {
		return cost{}, err
	}
	k = k.plus(cost{steps: 1})
	c.memo[name] = k
	return k, nil
}

func (c *coster) node(n parse.Node) (cost, error) {
	one := cost{steps: 1}
	switch n := n.(type) {
	case nil:
		return cost{}, nil
	case *parse.ListNode:
		if n == nil {
			return cost{}, nil
		}
		total := one
		for _, m := range n.Nodes {
			k, err := c.node(m)
			if err != nil {
				return cost{}, err
			}
			total = total.plus(k)
		}
		return total, nil
	case *parse.ActionNode:
		return one.plus(pipeCost(n.Pipe)), nil
	case *parse.IfNode:
		return c.branch(&n.BranchNode, 1)
	case *parse.WithNode:
		return c.branch(&n.BranchNode, 1)
	case *parse.RangeNode:
		count, err := c.rangeCount(n)
		if err != nil {
			return cost{}, err
		}
		k, err := c.branch(&n.BranchNode, count)
		if err != nil {
			return cost{}, err
		}
		return k.plus(cost{iterations: max(count, 0)}), nil
	case *parse.TemplateNode:
		var tree *parse.Tree
		if callee := c.t.Lookup(n.Name); callee != nil {
			tree = callee.Tree
		}
		k, err := c.template(n.Name, tree)
		if err != nil {
			return cost{}, err
		}
		return one.plus(pipeCost(n.Pipe)).plus(k), nil
	default: // text, comment, break, continue
		return one, nil
	}
}

// branch costs an if, with or range whose body runs count times.
func (c *coster) branch(n *parse.BranchNode, count int64) (cost, error) {
	body, err := c.node(n.List)
	if err != nil {
		return cost{}, err
	}
	alt, err := c.node(n.ElseList)
	if err != nil {
		return cost{}, err
	}
	return cost{steps: 1}.plus(pipeCost(n.Pipe)).plus(body.times(max(count, 0))).plus(alt), nil
}

// rangeCount is how often a range runs its body: it must range over an
// integer constant.
func (c *coster) rangeCount(n *parse.RangeNode) (int64, error) {
	if n.Pipe != nil && len(n.Pipe.Cmds) == 1 && len(n.Pipe.Cmds[0].Args) == 1 {
		if num, ok := n.Pipe.Cmds[0].Args[0].(*parse.NumberNode); ok && (num.IsInt || num.IsUint) {
			if !num.IsInt || num.Int64 > maxRangeIterations {
				return 0, fmt.Errorf("%s: {{range %s}} iterates %s times; the init templates of one volume may iterate %d times in all",
					c.where(n), n.Pipe, num.Text, maxRangeIterations)
			}
			return num.Int64, nil
		}
	}
	return 0, fmt.Errorf("%s: {{range %s}}: init templates may range only over an integer constant, such as {{range 3}}; pod information has no lists to range over",
		c.where(n), n.Pipe)
}

func (c *coster) where(n parse.Node) string {
	loc, _ := c.t.ErrorContext(n)
	return loc
}

// pipeCost counts the nodes of a pipeline: each is evaluated once.
func pipeCost(p *parse.PipeNode) cost {
	if p == nil {
		return cost{}
	}
	n := int64(1 + len(p.Decl))
	k := cost{steps: n}
	for _, cmd := range p.Cmds {
		k = k.plus(cost{steps: 1})
		for _, arg := range cmd.Args {
			k = k.plus(argCost(arg))
		}
	}
	return k
}

func argCost(n parse.Node) cost {
	switch n := n.(type) {
	case *parse.PipeNode:
		return pipeCost(n)
	case *parse.ChainNode:
		return cost{steps: int64(1 + len(n.Field))}.plus(argCost(n.Node))
	default:
		return cost{steps: 1}
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return 0
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = fmt.Sprintf("%q", x)
	}
	return out
}

// budgetSlot holds the budget a template's functions charge: the one of
// the execution running it, set for its length.
type budgetSlot struct{ b *renderBudget }

// funcs are the bounded replacements of the string builtins, charging the
// slot's budget.
func (s *budgetSlot) funcs() template.FuncMap {
	return template.FuncMap{
		"printf":   func(format string, args ...any) (string, error) { return s.b.printf(format, args...) },
		"print":    func(args ...any) (string, error) { return s.b.print(args...) },
		"println":  func(args ...any) (string, error) { return s.b.println(args...) },
		"html":     func(args ...any) (string, error) { return s.b.escape("html", template.HTMLEscaper, args) },
		"js":       func(args ...any) (string, error) { return s.b.escape("js", template.JSEscaper, args) },
		"urlquery": func(args ...any) (string, error) { return s.b.escape("urlquery", template.URLQueryEscaper, args) },
		"eq":       func(arg1 reflect.Value, arg2 ...reflect.Value) (bool, error) { return s.b.eq(arg1, arg2...) },
		"ne":       func(arg1, arg2 reflect.Value) (bool, error) { return s.b.ne(arg1, arg2) },
		"lt":       func(arg1, arg2 reflect.Value) (bool, error) { return s.b.lt(arg1, arg2) },
		"le":       func(arg1, arg2 reflect.Value) (bool, error) { return s.b.le(arg1, arg2) },
		"gt":       func(arg1, arg2 reflect.Value) (bool, error) { return s.b.gt(arg1, arg2) },
		"ge":       func(arg1, arg2 reflect.Value) (bool, error) { return s.b.ge(arg1, arg2) },
	}
}

// reserve admits a function call whose result is at most estimate bytes.
func (b *renderBudget) reserve(name string, estimate int64) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	if estimate > maxFuncResultBytes {
		return fmt.Errorf("%w: %s could produce up to %d bytes; one call may produce %d (formatting widths and precisions count)",
			ErrInvalidSpec, name, estimate, maxFuncResultBytes)
	}
	if estimate > b.work {
		return fmt.Errorf("%w: %s could produce up to %d bytes, but only %d of the %d bytes the string functions of one volume's init templates may produce or compare are left",
			ErrInvalidSpec, name, estimate, b.work, maxTemplateWorkBytes)
	}
	return nil
}

// charge takes n bytes from the work budget.
func (b *renderBudget) charge(name string, n int64) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	if n > b.work {
		return fmt.Errorf("%w: %s needs %d bytes, but only %d of the %d bytes the string functions of one volume's init templates may produce or compare are left",
			ErrInvalidSpec, name, n, b.work, maxTemplateWorkBytes)
	}
	b.work -= n
	return nil
}

func (b *renderBudget) printf(format string, args ...any) (string, error) {
	if err := b.reserve("printf", printfBound(format, args)); err != nil {
		return "", err
	}
	s := fmt.Sprintf(format, args...)
	return s, b.charge("printf", int64(len(s)))
}

func (b *renderBudget) print(args ...any) (string, error) {
	if err := b.reserve("print", sprintBound(args)); err != nil {
		return "", err
	}
	s := fmt.Sprint(args...)
	return s, b.charge("print", int64(len(s)))
}

func (b *renderBudget) println(args ...any) (string, error) {
	if err := b.reserve("println", sprintBound(args)); err != nil {
		return "", err
	}
	s := fmt.Sprintln(args...)
	return s, b.charge("println", int64(len(s)))
}

// escapeFactor bounds how much html, js and urlquery grow their input
// (js turns one byte into \u003C).
const escapeFactor = 6

// escape is one of html, js and urlquery, bounded.
func (b *renderBudget) escape(name string, escape func(...any) string, args []any) (string, error) {
	if err := b.reserve(name, escapeFactor*sprintBound(args)); err != nil {
		return "", err
	}
	s := escape(args...)
	return s, b.charge(name, int64(len(s)))
}

// valueBound bounds the formatted size of a template value other than a
// string or PodInfo: numbers, bools, nil and the like, under any verb
// (%f of 1e308 is 316 bytes, a complex number twice that).
const valueBound = 1024

// formattedBound bounds what one verb prints of v, width and precision
// aside: %x of a string doubles it, "% #x" makes five bytes of one.
func formattedBound(v any) int64 {
	switch v := v.(type) {
	case string:
		return 5*int64(len(v)) + 64
	case PodInfo:
		return 5*podInfoLen(v) + 256
	default:
		return valueBound
	}
}

// sprintBound bounds fmt.Sprint and fmt.Sprintln of args.
func sprintBound(args []any) int64 {
	n := int64(len(args) + 1)
	for _, a := range args {
		switch a := a.(type) {
		case string:
			n += int64(len(a))
		case PodInfo:
			n += podInfoLen(a) + 16
		default:
			n += valueBound
		}
	}
	return n
}

func podInfoLen(p PodInfo) int64 {
	return int64(len(p.PodName) + len(p.PodNamespace) + len(p.PodUID) + len(p.ServiceAccount) + len(p.NodeName) + len(p.VolumeID) + 128)
}

// maxFmtWidth is the largest width or precision fmt takes from an argument
// (*); literal ones may have one more digit before fmt gives up.
const maxFmtWidth = 1_000_000

// printfBound bounds len(fmt.Sprintf(format, args...)) without formatting:
// every verb may pad to the largest width or precision in format (twice,
// for a complex number) and print any argument, or, without explicit
// argument indexes, each argument is printed at most once.
func printfBound(format string, args []any) int64 {
	var verbs, width int64
	star, indexed := false, false
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		verbs++
		inIndex := false
	spec:
		for i++; i < len(format); i++ {
			switch c := format[i]; {
			case c == '#' || c == '+' || c == '-' || c == ' ' || c == '.':
			case c == '[':
				indexed, inIndex = true, true
			case c == ']':
				inIndex = false
			case c == '*':
				star = true
			case c >= '0' && c <= '9':
				n := int64(0)
				for ; i < len(format) && format[i] >= '0' && format[i] <= '9'; i++ {
					n = min(n*10+int64(format[i]-'0'), saturated)
				}
				i--
				if !inIndex {
					width = max(width, n)
				}
			default:
				break spec // the verb
			}
		}
	}
	var each, largest int64
	for _, a := range args {
		k := formattedBound(a)
		each = add(each, k+32) // +32: %!(EXTRA type=...)
		largest = max(largest, k)
		if star {
			if n, ok := intValue(a); ok {
				width = max(width, min(n, maxFmtWidth))
			}
		}
	}
	if indexed {
		each = mul(verbs, largest)
	}
	perVerb := add(mul(2, width), 64) // 64: %!v(MISSING), %!(BADWIDTH) and the like
	return add(add(int64(len(format)), mul(verbs, perVerb)), each)
}

// intValue is the magnitude of an integer argument, as fmt takes it for *.
func intValue(a any) (int64, bool) {
	v := reflect.ValueOf(a)
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := v.Int()
		if n < 0 {
			n = -n
		}
		if n < 0 {
			return maxFmtWidth, true
		}
		return n, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return int64(min(v.Uint(), maxFmtWidth)), true
	}
	return 0, false
}

// The comparisons, charged with the bytes of the strings they compare: a
// loop comparing two long strings is otherwise free of every other bound.
// They take what a template over PodInfo can produce: strings, booleans
// and numbers.

var errNoComparison = errors.New("missing argument for comparison")

// scalar is a compared value, reduced to the kinds compare knows.
type scalar struct {
	kind reflect.Kind // Bool, Int64, Float64 or String
	b    bool
	i    int64
	f    float64
	s    string
}

// indirect is what an interface value holds; invalid for a nil one.
func indirect(v reflect.Value) reflect.Value {
	if v.Kind() == reflect.Interface {
		if v.IsNil() {
			return reflect.Value{}
		}
		return v.Elem()
	}
	return v
}

func toScalar(v reflect.Value) (scalar, error) {
	switch v.Kind() {
	case reflect.Bool:
		return scalar{kind: reflect.Bool, b: v.Bool()}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return scalar{kind: reflect.Int64, i: v.Int()}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if v.Uint() > math.MaxInt64 {
			return scalar{}, fmt.Errorf("comparison of %d: out of range", v.Uint())
		}
		return scalar{kind: reflect.Int64, i: int64(v.Uint())}, nil
	case reflect.Float32, reflect.Float64:
		return scalar{kind: reflect.Float64, f: v.Float()}, nil
	case reflect.String:
		return scalar{kind: reflect.String, s: v.String()}, nil
	}
	if !v.IsValid() {
		return scalar{}, errors.New("comparison of a missing value")
	}
	return scalar{}, fmt.Errorf("invalid type for comparison: %v", v.Type())
}

// ordering says whether a comparison needs an order or only equality.
type ordering int

const (
	equality ordering = iota
	order
)

// compare returns -1, 0 or 1 as x is less than, equal to or greater than
// y (for booleans, only 0 or 1: they have no order).
func (b *renderBudget) compare(name string, x, y reflect.Value, want ordering) (int, error) {
	x, y = indirect(x), indirect(y)
	if want == equality && (!x.IsValid() || !y.IsValid()) {
		if x.IsValid() == y.IsValid() {
			return 0, b.charge(name, 1) // nil == nil
		}
		return 1, b.charge(name, 1)
	}
	// PodInfo itself (eq . .), charged with its strings.
	if p, ok := x.Interface().(PodInfo); ok && want == equality && x.Type() == y.Type() {
		if err := b.charge(name, 1+podInfoLen(p)); err != nil {
			return 0, err
		}
		if x.Interface() == y.Interface() {
			return 0, nil
		}
		return 1, nil
	}
	a, err := toScalar(x)
	if err != nil {
		return 0, err
	}
	c, err := toScalar(y)
	if err != nil {
		return 0, err
	}
	if a.kind != c.kind {
		return 0, fmt.Errorf("incompatible types for comparison: %v and %v", x.Type(), y.Type())
	}
	var n int64 = 1
	if a.kind == reflect.String {
		n += int64(min(len(a.s), len(c.s)))
	}
	if err := b.charge(name, n); err != nil {
		return 0, err
	}
	switch a.kind {
	case reflect.Bool:
		if want == order {
			return 0, errors.New("invalid type for comparison: bool has no order")
		}
		if a.b == c.b {
			return 0, nil
		}
		return 1, nil
	case reflect.Int64:
		return cmp.Compare(a.i, c.i), nil
	case reflect.Float64:
		return cmp.Compare(a.f, c.f), nil
	}
	return strings.Compare(a.s, c.s), nil
}

// eq evaluates the comparison a == b || a == c || ...
func (b *renderBudget) eq(arg1 reflect.Value, arg2 ...reflect.Value) (bool, error) {
	if len(arg2) == 0 {
		return false, errNoComparison
	}
	for _, arg := range arg2 {
		c, err := b.compare("eq", arg1, arg, equality)
		if err != nil || c == 0 {
			return err == nil, err
		}
	}
	return false, nil
}

// ne evaluates the comparison a != b.
func (b *renderBudget) ne(arg1, arg2 reflect.Value) (bool, error) {
	c, err := b.compare("ne", arg1, arg2, equality)
	return c != 0, err
}

// lt evaluates the comparison a < b.
func (b *renderBudget) lt(arg1, arg2 reflect.Value) (bool, error) {
	c, err := b.compare("lt", arg1, arg2, order)
	return c < 0, err
}

// le evaluates the comparison a <= b.
func (b *renderBudget) le(arg1, arg2 reflect.Value) (bool, error) {
	c, err := b.compare("le", arg1, arg2, order)
	return c <= 0 && err == nil, err
}

// gt evaluates the comparison a > b.
func (b *renderBudget) gt(arg1, arg2 reflect.Value) (bool, error) {
	c, err := b.compare("gt", arg1, arg2, order)
	return c > 0, err
}

// ge evaluates the comparison a >= b.
func (b *renderBudget) ge(arg1, arg2 reflect.Value) (bool, error) {
	c, err := b.compare("ge", arg1, arg2, order)
	return c >= 0 && err == nil, err
}
