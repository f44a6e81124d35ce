//! The order of conda layers: dependencies first.
//!
//! Kahn's algorithm over the dependency graph, with ties broken by package
//! name and dependency cycles (conda-forge has a few) collapsed into one
//! group. Because a package nobody depends on (a leaf) frees no other
//! package when it is placed, adding a leaf to an environment never changes
//! the relative order of the others: every layer below it keeps its chain.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Groups of node indices, dependencies before dependents. `names[i]` is
/// node `i`'s name; `depends[i]` the nodes it depends on. A group holds
/// more than one node only when they form a cycle.
pub fn dependency_order(names: &[&str], depends: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let components = strongly_connected(depends);
    let mut component_of = vec![0; names.len()];
    for (c, members) in components.iter().enumerate() {
        for &node in members {
            component_of[node] = c;
        }
    }
    // Edges between components, dependency -> dependent, and in-degrees.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); components.len()];
    let mut waiting_on = vec![0usize; components.len()];
    for (node, deps) in depends.iter().enumerate() {
        let to = component_of[node];
        for &dep in deps {
            let from = component_of[dep];
            if from != to && !dependents[from].contains(&to) {
                dependents[from].push(to);
                waiting_on[to] += 1;
            }
        }
    }
    let key = |c: usize| {
        components[c]
            .iter()
            .map(|&n| names[n])
            .min()
            .unwrap_or_default()
    };
    let mut ready: BinaryHeap<Reverse<(&str, usize)>> = (0..components.len())
        .filter(|&c| waiting_on[c] == 0)
        .map(|c| Reverse((key(c), c)))
        .collect();
    let mut order = Vec::with_capacity(components.len());
    while let Some(Reverse((_, c))) = ready.pop() {
        let mut group = components[c].clone();
        group.sort_by_key(|&n| names[n]);
        order.push(group);
        for &next in &dependents[c] {
            waiting_on[next] -= 1;
            if waiting_on[next] == 0 {
                ready.push(Reverse((key(next), next)));
            }
        }
    }
    order
}

/// Tarjan's strongly connected components (iterative, so deep dependency
/// chains cannot overflow the stack).
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut next_index = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (node, ref mut edge)) = work.last_mut() {
            if *edge == 0 && index[node] == usize::MAX {
                index[node] = next_index;
                low[node] = next_index;
                next_index += 1;
                stack.push(node);
                on_stack[node] = true;
            }
            if let Some(&next) = edges[node].get(*edge) {
                *edge += 1;
                if index[next] == usize::MAX {
                    work.push((next, 0));
                } else if on_stack[next] {
                    low[node] = low[node].min(index[next]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(packages: &[(&str, &[&str])]) -> Vec<Vec<String>> {
        let names: Vec<&str> = packages.iter().map(|p| p.0).collect();
        let depends: Vec<Vec<usize>> = packages
            .iter()
            .map(|(_, deps)| {
                deps.iter()
                    .filter_map(|d| names.iter().position(|n| n == d))
                    .collect()
            })
            .collect();
        dependency_order(&names, &depends)
            .into_iter()
            .map(|g| g.into_iter().map(|i| names[i].to_owned()).collect())
            .collect()
    }

    fn flat(groups: &[Vec<String>]) -> Vec<&str> {
        groups.iter().flatten().map(String::as_str).collect()
    }

    #[test]
    fn dependencies_first_ties_by_name() {
        let env = [
            ("numpy", &["python", "libblas"][..]),
            ("python", &["libc", "openssl"]),
            ("openssl", &["libc"]),
            ("libc", &[]),
            ("libblas", &["libc"]),
            ("zlib", &[]),
        ];
        assert_eq!(
            flat(&order(&env)),
            ["libc", "libblas", "openssl", "python", "numpy", "zlib"]
        );
    }

    #[test]
    fn a_new_leaf_keeps_the_order_of_the_others() {
        let env = vec![("b", &["a"][..]), ("a", &[]), ("z", &[]), ("c", &["b"])];
        let before = order(&env);
        let mut with_leaf = env.clone();
        with_leaf.push(("m", &["a"]));
        let after = order(&with_leaf);
        let without: Vec<&str> = flat(&after).into_iter().filter(|n| *n != "m").collect();
        assert_eq!(without, flat(&before));
    }

    #[test]
    fn cycles_become_one_group() {
        let env = [
            ("libgcc", &["libgomp"][..]),
            ("libgomp", &["libgcc"]),
            ("app", &["libgcc"]),
            ("base", &[]),
        ];
        assert_eq!(
            order(&env),
            [vec!["base"], vec!["libgcc", "libgomp"], vec!["app"]]
        );
    }
}

/// Fits dependency-ordered `groups` into at most `budget` layers by
/// merging, again and again, the two neighbouring layers that are smallest
/// together (by `size`; the earlier pair on a tie). The order is kept, the
/// largest packages end up with layers of their own, and the plan is
/// deterministic.
pub fn fit_budget(
    groups: Vec<Vec<usize>>,
    size: impl Fn(usize) -> u64,
    budget: usize,
) -> Vec<Vec<usize>> {
    let budget = budget.max(1);
    let mut layers: Vec<(u64, Vec<usize>)> = groups
        .into_iter()
        .map(|g| (g.iter().map(|&i| size(i)).sum(), g))
        .collect();
    while layers.len() > budget {
        let at = (0..layers.len() - 1)
            .min_by_key(|&i| layers[i].0 + layers[i + 1].0)
            .unwrap_or(0);
        let (weight, group) = layers.remove(at + 1);
        layers[at].0 += weight;
        layers[at].1.extend(group);
    }
    layers.into_iter().map(|(_, g)| g).collect()
}

#[cfg(test)]
mod budget_tests {
    use super::fit_budget;

    #[test]
    fn largest_stay_alone_and_order_is_kept() {
        let groups: Vec<Vec<usize>> = (0..6).map(|i| vec![i]).collect();
        let sizes = [1, 50, 2, 3, 40, 4];
        let plan = fit_budget(groups.clone(), |i| sizes[i], 4);
        assert_eq!(plan, [vec![0], vec![1], vec![2, 3], vec![4, 5]]);
        assert_eq!(
            fit_budget(groups.clone(), |i| sizes[i], 1),
            vec![(0..6).collect::<Vec<_>>()]
        );
        assert_eq!(fit_budget(groups.clone(), |i| sizes[i], 10), groups);
    }
}
