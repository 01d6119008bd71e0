// Validates objects of the custom resources the deployment uses against validators generated
// from their CRDs (KEDA, GKE's networking, Knative serving, whose Service Cloud Run takes):
//   node crds.mjs OBJECTS.json     (a JSON array of objects)
// Prints one line per object; exits 1 when any is invalid or of a kind not known here.
import { readFileSync } from 'node:fs';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication';
import { BackendConfig } from '@kubernetes-models/gke/cloud.google.com/v1/BackendConfig';
import { ManagedCertificate } from '@kubernetes-models/gke/networking.gke.io/v1/ManagedCertificate';
import { FrontendConfig } from '@kubernetes-models/gke/networking.gke.io/v1beta1/FrontendConfig';
import { Service as KnativeService } from '@kubernetes-models/knative/serving.knative.dev/v1/Service';

const models = new Map(
  [ScaledObject, TriggerAuthentication, BackendConfig, ManagedCertificate, FrontendConfig, KnativeService].map(
    (Model) => {
      const probe = new Model({ metadata: { name: 'probe' } });
      return [`${probe.apiVersion}/${probe.kind}`, Model];
    },
  ),
);

const objects = JSON.parse(readFileSync(process.argv[2], 'utf8'));
let failed = 0;
for (const object of objects) {
  const key = `${object.apiVersion}/${object.kind}`;
  const name = `${key} ${object.metadata?.name}`;
  const Model = models.get(key);
  if (!Model) {
    console.log(`UNKNOWN ${name}: no schema for this kind`);
    failed += 1;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`valid ${name}`);
  } catch (e) {
    console.log(`INVALID ${name}: ${e.message}`);
    failed += 1;
  }
}
process.exit(failed ? 1 : 0);
