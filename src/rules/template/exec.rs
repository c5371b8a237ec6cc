//! Execution of a parsed template (Go's `text/template` exec.go): walks the tree with dot and
//! variables, evaluates pipelines, calls functions, and writes Go's `%v` of each action's value.

use std::borrow::Cow;

use super::funcs::{self, Ctx, FuncErr};
use super::gofmt::write_value;
use super::parse::{cmd_string, Arg, Cmd, Node, Pipe, Tree, MAX_DEPTH};
use super::value::{LabelsRef, Value};

/// Output beyond this is refused: an annotation is a line or a paragraph, and a template
/// nesting `define`s that call each other twice could otherwise grow exponentially.
pub const MAX_OUTPUT: usize = 1 << 20;
/// Node evaluations per expansion, for the same reason.
pub const MAX_STEPS: usize = 1_000_000;

/// An exec failure: where (byte offset), the command's text, and Go's message.
#[derive(Debug)]
pub struct ExecFailure {
    pub pos: usize,
    pub context: String,
    pub msg: String,
}

enum Flow {
    Break,
    Continue,
    Fail(ExecFailure),
}

type R<T> = Result<T, Flow>;

fn fail<T>(pos: usize, context: impl Into<String>, msg: impl Into<String>) -> R<T> {
    Err(Flow::Fail(ExecFailure {
        pos,
        context: context.into(),
        msg: msg.into(),
    }))
}

pub struct Exec<'a, 'q> {
    tree: &'a Tree,
    ctx: &'a Ctx<'q>,
    vars: Vec<(&'a str, Value<'a>)>,
    pub out: String,
    depth: usize,
    steps: usize,
}

impl<'a, 'q> Exec<'a, 'q> {
    pub fn new(tree: &'a Tree, ctx: &'a Ctx<'q>, capacity: usize) -> Self {
        Exec {
            tree,
            ctx,
            vars: Vec::with_capacity(8),
            out: String::with_capacity(capacity),
            depth: 0,
            steps: 0,
        }
    }

    pub fn run(&mut self, dot: Value<'a>) -> Result<(), ExecFailure> {
        self.vars.push(("$", dot.clone()));
        match self.walk(&self.tree.root, &dot) {
            Ok(()) => Ok(()),
            Err(Flow::Fail(f)) => Err(f),
            // The parser refuses break/continue outside range.
            Err(Flow::Break | Flow::Continue) => Ok(()),
        }
    }

    fn step(&mut self, pos: usize) -> R<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS || self.out.len() > MAX_OUTPUT {
            return fail(pos, "", "template expansion exceeds its size limit");
        }
        Ok(())
    }

    fn walk(&mut self, nodes: &'a [Node], dot: &Value<'a>) -> R<()> {
        for n in nodes {
            self.node(n, dot)?;
        }
        Ok(())
    }

    fn node(&mut self, n: &'a Node, dot: &Value<'a>) -> R<()> {
        match n {
            Node::Text(t) => {
                self.step(0)?;
                self.out.push_str(t);
            }
            Node::Action(p) => {
                self.step(p.pos)?;
                let v = self.pipeline(p, dot)?;
                if p.decl.is_empty() {
                    self.print(&v);
                }
            }
            Node::If(p, body, else_list) | Node::With(p, body, else_list) => {
                self.step(p.pos)?;
                let mark = self.vars.len();
                let v = self.pipeline(p, dot)?;
                let r = if v.truth() {
                    if matches!(n, Node::With(..)) {
                        self.walk(body, &v)
                    } else {
                        self.walk(body, dot)
                    }
                } else if let Some(e) = else_list {
                    self.walk(e, dot)
                } else {
                    Ok(())
                };
                self.vars.truncate(mark);
                r?;
            }
            Node::Range(p, body, else_list) => {
                self.step(p.pos)?;
                self.range(p, body, else_list.as_deref(), dot)?;
            }
            Node::Template(pos, name, pipe) => {
                self.step(*pos)?;
                let Some(body) = self.tree.defines.get(name) else {
                    return fail(
                        *pos,
                        format!("template {}", super::gofmt::quote(name)),
                        format!("no such template {}", super::gofmt::quote(name)),
                    );
                };
                let new_dot = match pipe {
                    Some(p) => self.pipeline(p, dot)?,
                    None => Value::Nil,
                };
                if self.depth >= MAX_DEPTH {
                    return fail(
                        *pos,
                        format!("template {}", super::gofmt::quote(name)),
                        format!("exceeded maximum template depth ({MAX_DEPTH})"),
                    );
                }
                self.depth += 1;
                let saved = std::mem::replace(&mut self.vars, vec![("$", new_dot.clone())]);
                let r = self.walk(body, &new_dot);
                self.vars = saved;
                self.depth -= 1;
                match r {
                    Err(Flow::Break | Flow::Continue) => {}
                    other => other?,
                }
            }
            Node::Break(_) => return Err(Flow::Break),
            Node::Continue(_) => return Err(Flow::Continue),
        }
        Ok(())
    }

    /// Go's `printValue`: a nil prints `<no value>`.
    fn print(&mut self, v: &Value<'a>) {
        match v {
            Value::Nil => self.out.push_str("<no value>"),
            // Go's printValue dereferences pointers that are not Stringers: `{...}`, not `&{...}`.
            Value::Sample(_) => {
                let mut s = String::new();
                write_value(&mut s, v);
                self.out.push_str(s.strip_prefix('&').unwrap_or(&s));
            }
            Value::Str(s) => self.out.push_str(s),
            v => write_value(&mut self.out, v),
        }
    }

    fn range(
        &mut self,
        p: &'a Pipe,
        body: &'a [Node],
        else_list: Option<&'a [Node]>,
        dot: &Value<'a>,
    ) -> R<()> {
        let mark = self.vars.len();
        let v = self.pipe_value(p, dot)?;
        let mut items: Vec<(Value<'a>, Value<'a>)> = Vec::new();
        match &v {
            Value::Samples(s) => {
                for (i, x) in s.iter().enumerate() {
                    items.push((
                        Value::Int(i as i64),
                        Value::Sample(std::rc::Rc::new(x.clone())),
                    ));
                }
            }
            Value::Labels(l) => match l {
                LabelsRef::Borrowed(ls) => {
                    for x in ls.iter() {
                        items.push((
                            Value::Str(Cow::Borrowed(x.name.as_str())),
                            Value::Str(Cow::Borrowed(x.value.as_str())),
                        ));
                    }
                }
                LabelsRef::Owned(_) => {
                    for (k, x) in l.iter() {
                        items.push((
                            Value::Str(Cow::Owned(k.to_string())),
                            Value::Str(Cow::Owned(x.to_string())),
                        ));
                    }
                }
            },
            Value::Map(m) => {
                for (k, x) in m.iter() {
                    items.push((Value::Str(Cow::Owned(k.clone())), x.clone()));
                }
            }
            // Go: ranging over a nil (invalid) value runs the else branch.
            Value::Nil => {}
            other => {
                let mut s = String::new();
                write_value(&mut s, other);
                // Go names the node evaluated last: the pipeline's last command.
                let (pos, ctx) = p.cmds.last().map_or((p.pos, String::new()), |c| {
                    (c.arg_pos.first().copied().unwrap_or(c.pos), cmd_string(c))
                });
                return fail(pos, ctx, format!("range can't iterate over {s}"));
            }
        }
        if items.is_empty() {
            self.vars.truncate(mark);
            if let Some(e) = else_list {
                self.walk(e, dot)?;
            }
            return Ok(());
        }
        for (k, elem) in items {
            self.step(p.pos)?;
            let iter_mark = self.vars.len();
            if p.is_assign {
                match p.decl.as_slice() {
                    [one] => self.assign(one, elem.clone(), p.pos)?,
                    [a, b] => {
                        self.assign(a, k, p.pos)?;
                        self.assign(b, elem.clone(), p.pos)?;
                    }
                    _ => {}
                }
            } else {
                match p.decl.as_slice() {
                    [one] => self.vars.push((one, elem.clone())),
                    [a, b] => {
                        self.vars.push((a, k));
                        self.vars.push((b, elem.clone()));
                    }
                    _ => {}
                }
            }
            let r = self.walk(body, &elem);
            self.vars.truncate(iter_mark);
            match r {
                Ok(()) | Err(Flow::Continue) => {}
                Err(Flow::Break) => break,
                Err(f) => return Err(f),
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn assign(&mut self, name: &str, v: Value<'a>, pos: usize) -> R<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => fail(pos, name, format!("undefined variable: {name}")),
        }
    }

    /// The pipeline's value without its declarations.
    fn pipe_value(&mut self, p: &'a Pipe, dot: &Value<'a>) -> R<Value<'a>> {
        let mut v: Option<Value<'a>> = None;
        for c in &p.cmds {
            v = Some(self.command(c, dot, v)?);
        }
        Ok(v.unwrap_or(Value::Nil))
    }

    /// The pipeline's value, declaring or assigning its variables.
    fn pipeline(&mut self, p: &'a Pipe, dot: &Value<'a>) -> R<Value<'a>> {
        let v = self.pipe_value(p, dot)?;
        for d in &p.decl {
            if p.is_assign {
                self.assign(d, v.clone(), p.pos)?;
            } else {
                self.vars.push((d, v.clone()));
            }
        }
        Ok(v)
    }

    fn command(&mut self, c: &'a Cmd, dot: &Value<'a>, fin: Option<Value<'a>>) -> R<Value<'a>> {
        let Some(first) = c.args.first() else {
            return fail(c.pos, cmd_string(c), "empty command");
        };
        let has_args = c.args.len() > 1 || fin.is_some();
        match first {
            Arg::Ident(name) => self.call(c, name, dot, fin),
            Arg::Nil => fail(c.pos, cmd_string(c), "nil is not a command"),
            Arg::Field(f) | Arg::Var(_, f) | Arg::Pipe(_, f) if has_args && !f.is_empty() => {
                let (last, recv_fields) = f.split_last().unwrap_or((&f[0], &[]));
                let at = c.arg_pos.first().copied().unwrap_or(c.pos);
                // A method call with arguments: only `*time.Time` has methods here.
                let recv = match first {
                    Arg::Field(_) => fields(dot.clone(), recv_fields),
                    Arg::Var(name, _) => match self.vars.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => fields(v.clone(), recv_fields),
                        None => Err(format!("undefined variable: {name}")),
                    },
                    Arg::Pipe(p, _) => {
                        let v = self.pipeline(p, dot)?;
                        fields(v, recv_fields)
                    }
                    _ => Ok(Value::Nil),
                };
                let recv = recv.or_else(|e| fail(at, arg_text(first), e))?;
                let Value::Time(ms) = recv else {
                    return fail(
                        at,
                        arg_text(first),
                        format!("{last} is not a method but has arguments"),
                    );
                };
                let args = self.args(c, dot, fin)?;
                funcs::time_method(ms, last, &args).map_err(|e| self.call_error(c, last, e))
            }
            _ if has_args => fail(
                c.pos,
                cmd_string(c),
                format!("can't give argument to non-function {}", arg_text(first)),
            ),
            _ => self.arg(c, 0, dot),
        }
    }

    /// The command's arguments after the first word, and the piped value last.
    fn args(&mut self, c: &'a Cmd, dot: &Value<'a>, fin: Option<Value<'a>>) -> R<Vec<Value<'a>>> {
        let mut args = Vec::with_capacity(c.args.len());
        for i in 1..c.args.len() {
            args.push(self.arg(c, i, dot)?);
        }
        if let Some(f) = fin {
            args.push(f);
        }
        Ok(args)
    }

    fn call(
        &mut self,
        c: &'a Cmd,
        name: &str,
        dot: &Value<'a>,
        fin: Option<Value<'a>>,
    ) -> R<Value<'a>> {
        if name == "and" || name == "or" {
            // Short-circuit: Go evaluates arguments only until the result is known.
            if c.args.len() == 1 && fin.is_none() {
                return fail(
                    c.pos,
                    cmd_string(c),
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                );
            }
            let mut last = Value::Nil;
            for i in 1..c.args.len() {
                last = self.arg(c, i, dot)?;
                if last.truth() == (name == "or") {
                    return Ok(last);
                }
            }
            if let Some(f) = fin {
                last = f;
            }
            return Ok(last);
        }
        let args = self.args(c, dot, fin)?;
        funcs::call(name, args, self.ctx).map_err(|e| self.call_error(c, name, e))
    }

    /// Words a failed call as Go does: arity and argument type errors are found before the
    /// call (a literal argument is named as written), the function's own error is wrapped.
    fn call_error(&self, c: &Cmd, name: &str, e: FuncErr) -> Flow {
        let (pos, context, msg) = match e {
            FuncErr::Arity(m) => (c.pos, cmd_string(c), m),
            FuncErr::Call(m) => (c.pos, cmd_string(c), format!("error calling {name}: {m}")),
            FuncErr::Type { idx, expected, got } => match c.args.get(idx + 1) {
                Some(a) => {
                    let pos = c.arg_pos.get(idx + 1).copied().unwrap_or(c.pos);
                    let text = arg_text(a);
                    let msg = match a {
                        Arg::Nil => format!("cannot assign nil to {expected}"),
                        Arg::Str(_) | Arg::Int(..) | Arg::Float(..) | Arg::Bool(_)
                            if expected == "string" =>
                        {
                            format!("expected string; found {text}")
                        }
                        Arg::Str(_) | Arg::Int(..) | Arg::Float(..) | Arg::Bool(_) => {
                            format!("can't handle {text} for arg of type {expected}")
                        }
                        _ => format!("wrong type for value; expected {expected}; got {got}"),
                    };
                    (pos, text, msg)
                }
                None => (
                    c.pos,
                    cmd_string(c),
                    format!("wrong type for value; expected {expected}; got {got}"),
                ),
            },
        };
        Flow::Fail(ExecFailure { pos, context, msg })
    }

    /// Evaluates the command's argument `i`; errors name that argument and its position.
    fn arg(&mut self, c: &'a Cmd, i: usize, dot: &Value<'a>) -> R<Value<'a>> {
        let Some(a) = c.args.get(i) else {
            return Ok(Value::Nil);
        };
        let at = c.arg_pos.get(i).copied().unwrap_or(c.pos);
        match a {
            Arg::Dot => Ok(dot.clone()),
            Arg::Field(f) => fields(dot.clone(), f).or_else(|e| fail(at, arg_text(a), e)),
            Arg::Var(name, f) => {
                let Some((_, v)) = self.vars.iter().rev().find(|(n, _)| n == name) else {
                    return fail(at, arg_text(a), format!("undefined variable: {name}"));
                };
                fields(v.clone(), f).or_else(|e| fail(at, arg_text(a), e))
            }
            Arg::Ident(name) => match name.as_str() {
                // A function used as an operand is called without arguments.
                "and" | "or" => fail(
                    at,
                    name.as_str(),
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ),
                _ => {
                    let sub = Cmd {
                        pos: at,
                        args: vec![a.clone()],
                        arg_pos: vec![at],
                    };
                    funcs::call(name, Vec::new(), self.ctx)
                        .map_err(|e| self.call_error(&sub, name, e))
                }
            },
            Arg::Pipe(p, f) => {
                self.depth += 1;
                let r = if self.depth > MAX_DEPTH * 2 {
                    fail(at, arg_text(a), "max nesting depth exceeded")
                } else {
                    self.pipeline(p, dot)
                };
                self.depth -= 1;
                fields(r?, f).or_else(|e| fail(at, arg_text(a), e))
            }
            Arg::Str(s) => Ok(Value::Str(Cow::Borrowed(s))),
            Arg::Int(i, _) => Ok(Value::Int(*i)),
            Arg::Float(f, _) => Ok(Value::Float(*f)),
            Arg::Bool(b) => Ok(Value::Bool(*b)),
            Arg::Nil => Ok(Value::Nil),
        }
    }
}

fn fields<'a>(mut v: Value<'a>, f: &[String]) -> Result<Value<'a>, String> {
    for name in f {
        v = v.field(name)?;
    }
    Ok(v)
}

fn arg_text(a: &Arg) -> String {
    cmd_string(&Cmd {
        pos: 0,
        args: vec![a.clone()],
        arg_pos: Vec::new(),
    })
}
