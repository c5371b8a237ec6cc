//! Execution of a parsed template (Go's `text/template` exec.go): walks the tree with dot and
//! variables, evaluates pipelines, calls functions, and writes Go's `%v` of each action's value.

use std::borrow::Cow;

use super::funcs::{self, Ctx};
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
                return fail(p.pos, "range", format!("range can't iterate over {s}"));
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
        match first {
            Arg::Ident(name) => self.call(c, name, dot, fin),
            Arg::Nil => fail(c.pos, cmd_string(c), "nil is not a command"),
            Arg::Field(f) | Arg::Var(_, f) | Arg::Pipe(_, f)
                if c.args.len() > 1 || fin.is_some() =>
            {
                let last = f.last().map_or("", String::as_str);
                if f.is_empty() {
                    fail(
                        c.pos,
                        cmd_string(c),
                        format!("can't give argument to non-function {}", arg_text(first)),
                    )
                } else {
                    fail(
                        c.pos,
                        cmd_string(c),
                        format!("{last} is not a method but has arguments"),
                    )
                }
            }
            _ if c.args.len() > 1 || fin.is_some() => fail(
                c.pos,
                cmd_string(c),
                format!("can't give argument to non-function {}", arg_text(first)),
            ),
            a => self.arg(c, a, dot),
        }
    }

    fn call(
        &mut self,
        c: &'a Cmd,
        name: &str,
        dot: &Value<'a>,
        fin: Option<Value<'a>>,
    ) -> R<Value<'a>> {
        let rest = c.args.get(1..).unwrap_or(&[]);
        if name == "and" || name == "or" {
            // Short-circuit: Go evaluates arguments only until the result is known.
            let total = rest.len() + usize::from(fin.is_some());
            if total == 0 {
                return fail(
                    c.pos,
                    cmd_string(c),
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                );
            }
            let mut last = Value::Nil;
            for a in rest {
                last = self.arg(c, a, dot)?;
                if last.truth() == (name == "or") {
                    return Ok(last);
                }
            }
            if let Some(f) = fin {
                last = f;
            }
            return Ok(last);
        }
        let mut args = Vec::with_capacity(rest.len() + 1);
        for a in rest {
            args.push(self.arg(c, a, dot)?);
        }
        if let Some(f) = fin {
            args.push(f);
        }
        funcs::call(name, args, self.ctx)
            .or_else(|e| fail(c.pos, cmd_string(c), format!("error calling {name}: {e}")))
    }

    /// Evaluates an operand (`c` names the command for errors).
    fn arg(&mut self, c: &'a Cmd, a: &'a Arg, dot: &Value<'a>) -> R<Value<'a>> {
        let ctx = || cmd_string(c);
        match a {
            Arg::Dot => Ok(dot.clone()),
            Arg::Field(f) => fields(dot.clone(), f).or_else(|e| fail(c.pos, ctx(), e)),
            Arg::Var(name, f) => {
                let Some((_, v)) = self.vars.iter().rev().find(|(n, _)| n == name) else {
                    return fail(c.pos, ctx(), format!("undefined variable: {name}"));
                };
                fields(v.clone(), f).or_else(|e| fail(c.pos, ctx(), e))
            }
            Arg::Ident(name) => {
                let sub = Cmd {
                    pos: c.pos,
                    args: vec![Arg::Ident(name.clone())],
                };
                // A function used as an operand is called without arguments.
                let r = match name.as_str() {
                    "and" | "or" => fail(
                        c.pos,
                        ctx(),
                        format!("wrong number of args for {name}: want at least 1 got 0"),
                    ),
                    _ => funcs::call(name, Vec::new(), self.ctx).or_else(|e| {
                        fail(
                            c.pos,
                            cmd_string(&sub),
                            format!("error calling {name}: {e}"),
                        )
                    }),
                };
                r
            }
            Arg::Pipe(p, f) => {
                self.depth += 1;
                let r = if self.depth > MAX_DEPTH * 2 {
                    fail(c.pos, ctx(), "max nesting depth exceeded")
                } else {
                    self.pipeline(p, dot)
                };
                self.depth -= 1;
                fields(r?, f).or_else(|e| fail(c.pos, ctx(), e))
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
    })
}
