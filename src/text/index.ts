export { editDistance } from './edit-distance.js';
export { formatBytes } from './bytes.js';
export { yaml } from './yaml.js';
