//! Render throughput: a generated repo with N objects in base/ (Deployments, Services,
//! ConfigMaps, 100 documents per file) and three tiers whose tier.yaml sets a namespace,
//! labels, vars and patches; each tier rendered in turn. A plain `harness = false` bench,
//! to keep criterion's build off a shared 2-core machine: `cargo bench --bench render`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use gitopsd::render::{KindScopes, Kustomize, Limits, render_tier_with};

const TIERS: [&str; 3] = ["experimental", "validation", "operational"];

fn object(i: usize) -> String {
    match i % 3 {
        0 => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  labels: {{app: app-{i}}}\n\
             spec:\n  replicas: ${{REPLICAS}}\n  selector: {{matchLabels: {{app: app-{i}}}}}\n  template:\n\
             \x20   metadata: {{labels: {{app: app-{i}}}}}\n    spec:\n      containers:\n\
             \x20       - name: app\n          image: registry.example.com/app:${{TAG}}\n\
             \x20         ports: [{{containerPort: 8080}}]\n\
             \x20         resources: {{requests: {{cpu: 100m, memory: 128Mi}}, limits: {{memory: 256Mi}}}}\n"
        ),
        1 => format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\nspec:\n  selector: {{app: app-{i}}}\n\
             \x20 ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
        ),
        _ => format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{i}\ndata:\n  LOG_LEVEL: info\n  URL: http://app-{i}/\n"
        ),
    }
}

fn generate(root: &Path, objects: usize) {
    std::fs::create_dir_all(root.join("base")).unwrap();
    let mut file = String::new();
    for i in 0..objects {
        writeln!(file, "---\n{}", object(i)).unwrap();
        if (i + 1) % 100 == 0 || i + 1 == objects {
            std::fs::write(root.join(format!("base/app-{:05}.yaml", i / 100)), &file).unwrap();
            file.clear();
        }
    }
    for (n, tier) in TIERS.iter().enumerate() {
        let dir = root.join("tiers").join(tier);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("tier.yaml"),
            format!(
                "namespace: bench-{tier}\nlabels: {{env: {tier}}}\nvars: {{REPLICAS: \"{}\", TAG: \"1.{n}.0\"}}\nsubstitute: [base]\n\
                 patches:\n  - target: {{kind: Deployment, name: app-0}}\n    merge: {{spec: {{replicas: 5}}}}\n\
                 \x20 - target: {{kind: ConfigMap, name: app-2}}\n    json: [{{op: replace, path: /data/LOG_LEVEL, value: debug}}]\n",
                n + 1
            ),
        )
        .unwrap();
    }
}

fn main() {
    let limits = Limits {
        max_objects: 100_000,
        ..Limits::default()
    };
    let scopes = KindScopes::builtin();
    for objects in [1_000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), objects);
        let mut best = Duration::MAX;
        let mut digests = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            digests.clear();
            for tier in TIERS {
                let set = render_tier_with(dir.path(), tier, &limits, &Kustomize::none(), &scopes)
                    .expect("the generated repo renders");
                assert_eq!(set.objects.len(), objects);
                digests.push(set.digest);
            }
            best = best.min(start.elapsed());
        }
        println!(
            "render {objects:>6} objects x 3 tiers: {:>8.1} ms (best of 5; {:.1} us/object)",
            best.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e6 / (3 * objects) as f64
        );
    }
}
